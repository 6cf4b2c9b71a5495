/**
 * The status-bar item and its popup. The item shows the env and, only when the server is idle,
 * the time left; a click opens the details (queue and limit facts, exemption, "Keep my server").
 */
import { Popup, showPopup } from '@jupyterlab/statusbar';
import { Widget } from '@lumino/widgets';

import { IStatus } from './api';

export class StatusItem extends Widget {
  constructor(private readonly onKeep: () => void) {
    super();
    this.addClass('jp-jhle-status');
    this.node.title = 'JupyterHub: your server';
    this.node.setAttribute('role', 'button');
    this.node.addEventListener('click', () => this.togglePopup());
    this.setHidden(true);
  }

  get status(): IStatus | null {
    return this._status;
  }

  show_(status: IStatus): void {
    this._status = status;
    this.node.textContent = status.item || status.env || 'JupyterHub';
    this.node.classList.toggle('jp-jhle-idle', status.culler.state === 'idle');
    this.node.classList.toggle('jp-jhle-warn', status.warn);
    this.setHidden(false);
    if (this._popup && !this._popup.isDisposed) {
      this._body.render(status);
    }
  }

  private togglePopup(): void {
    if (this._popup && !this._popup.isDisposed) {
      this._popup.dispose();
      return;
    }
    if (!this._status) {
      return;
    }
    this._body = new DetailsBody(this.onKeep);
    this._body.render(this._status);
    this._popup = showPopup({ body: this._body, anchor: this, align: 'left' });
  }

  private _status: IStatus | null = null;
  private _popup: Popup | null = null;
  private _body!: DetailsBody;
}

class DetailsBody extends Widget {
  constructor(private readonly onKeep: () => void) {
    super();
    this.addClass('jp-jhle-details');
  }

  render(status: IStatus): void {
    const node = this.node;
    node.textContent = '';
    const title = document.createElement('h3');
    title.textContent = 'Your JupyterHub server';
    node.appendChild(title);
    for (const line of status.details) {
      const p = document.createElement('p');
      p.textContent = line;
      node.appendChild(p);
    }
    if (status.can_keep && status.culler.state !== 'off' && status.culler.state !== 'exempt') {
      const button = document.createElement('button');
      button.className = 'jp-mod-styled jp-mod-accept jp-jhle-keep';
      button.textContent = 'Keep my server';
      button.addEventListener('click', () => this.onKeep());
      node.appendChild(button);
    }
  }
}
