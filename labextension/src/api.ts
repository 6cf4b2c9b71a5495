/**
 * The server extension's two endpoints (jupyterhub_lab_ext.labserver), with the server's own
 * login: JupyterLab's ServerConnection sends the session cookie and the xsrf token.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** What `GET jupyterhub-lab-ext/status` answers (see labserver/status.py: compose). */
export interface IStatus {
  env: string | null;
  item: string;
  details: string[];
  warn: boolean;
  can_keep: boolean;
  refresh_seconds: number;
  culler: {
    state: string;
    text?: string;
    seconds_left?: number;
    left_text?: string;
    warning_seconds?: number;
    exemption?: { until: string | null; reason: string } | null;
  };
  limits: { state: string; text: string };
}

/** The endpoint is missing: the server runs without the extension (turned off, or no hub). */
export class NotInstalled extends Error {}

async function call(path: string, method: string): Promise<IStatus> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'jupyterhub-lab-ext', path);
  const response = await ServerConnection.makeRequest(url, { method }, settings);
  if (response.status === 404) {
    throw new NotInstalled(url);
  }
  if (!response.ok) {
    throw new Error(`${method} ${path}: ${response.status}`);
  }
  return (await response.json()) as IStatus;
}

export function fetchStatus(): Promise<IStatus> {
  return call('status', 'GET');
}

export function keepServer(): Promise<IStatus> {
  return call('keep', 'POST');
}
