/**
 * jupyterhub-lab-ext: what the hub decides about this server, inside JupyterLab.
 *
 * Polls the server extension (at most once per refresh_seconds, 30 s by default), shows the
 * status item, raises one notification with "Keep my server" when the idle cull is within the
 * culler's warning time, and one when an admin exempts the server. Quiet on failure: a missing
 * extension hides the item; an unreachable server or service never opens an error dialog.
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { Notification } from '@jupyterlab/apputils';
import { IStatusBar } from '@jupyterlab/statusbar';

import { fetchStatus, IStatus, keepServer, NotInstalled } from './api';
import { StatusItem } from './item';

const MIN_REFRESH = 5;
const MAX_BACKOFF = 300;

class StatusController {
  constructor(private readonly item: StatusItem | null) {}

  start(): void {
    void this.tick();
  }

  async keep(): Promise<void> {
    try {
      this.apply(await keepServer());
      this.dismissWarning();
      Notification.success('Thanks: your server counts as in use again.', { autoClose: 4000 });
    } catch (err) {
      console.warn('jupyterhub-lab-ext: keep failed', err);
      Notification.warning('Could not reach the hub to keep your server; try again.', {
        autoClose: 6000
      });
    }
  }

  private async tick(): Promise<void> {
    let delay = this.refresh;
    try {
      this.apply(await fetchStatus());
      this.failures = 0;
      delay = this.refresh;
    } catch (err) {
      if (err instanceof NotInstalled) {
        this.item?.setHidden(true);
        return; // the server runs without the extension: stay out of the way
      }
      this.failures += 1;
      delay = Math.min(MAX_BACKOFF, this.refresh * 2 ** Math.min(this.failures, 4));
    }
    window.setTimeout(() => void this.tick(), delay * 1000);
  }

  private apply(status: IStatus): void {
    this.refresh = Math.max(MIN_REFRESH, status.refresh_seconds || 30);
    this.item?.show_(status);
    this.warnIfDue(status);
    this.tellExemption(status);
  }

  private warnIfDue(status: IStatus): void {
    if (!status.warn || !status.can_keep) {
      this.dismissWarning();
      return;
    }
    const left = status.culler.left_text ?? 'a few minutes';
    const message = `Your server is idle and stops in ${left}. Unsaved changes in open notebooks will be lost.`;
    const options = {
      autoClose: false as const,
      actions: [
        {
          label: 'Keep my server',
          caption: 'Counts as activity: the idle timeout starts again',
          displayType: 'accent' as const,
          callback: () => void this.keep()
        }
      ]
    };
    if (this.warningId && Notification.update({ id: this.warningId, message, ...options })) {
      return;
    }
    this.warningId = Notification.warning(message, options);
  }

  private dismissWarning(): void {
    if (this.warningId) {
      Notification.dismiss(this.warningId);
      this.warningId = null;
    }
  }

  private tellExemption(status: IStatus): void {
    const exempt = status.culler.state === 'exempt' ? status.culler.text ?? '' : '';
    if (exempt && exempt !== this.exemptionShown) {
      Notification.info(`Your server is ${exempt}.`, { autoClose: 10000 });
    }
    this.exemptionShown = exempt;
  }

  private refresh = 30;
  private failures = 0;
  private warningId: string | null = null;
  private exemptionShown = '';
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyterhub-lab-ext:status',
  description: 'The hub’s decisions about this server: env, idle cull, queue and limits.',
  autoStart: true,
  optional: [IStatusBar],
  activate: (_app: JupyterFrontEnd, statusBar: IStatusBar | null) => {
    let controller: StatusController | null = null;
    const item = statusBar ? new StatusItem(() => void controller?.keep()) : null;
    if (statusBar && item) {
      statusBar.registerStatusItem(plugin.id, { item, align: 'left', rank: 100 });
    }
    controller = new StatusController(item);
    controller.start();
  }
};

export default plugin;
