/**
 * The only module that talks to the network: `GET <base_url>nbserve/api/servers`, served by the
 * Jupyter server extension `nbserve.labapi` behind Jupyter's own auth.
 *
 * `ServerConnection.makeRequest` adds the token / XSRF headers and `settings.baseUrl` already
 * holds the hub's base_url (`/user/<name>/`), so this works unchanged on remote hubs.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/**
 * How a state is shown: `nbserve.vocabulary.Look` as JSON, the same words and colours as the
 * notebook's live display and panel (the server extension adds it).
 */
export interface ILook {
  kind: string;
  badge: string;
  words: string;
  colour: string;
  title: string;
  css_class: string;
}

/** One `ModelVersionStatus` as TF Serving's REST API prints it, plus its look. */
export interface IVersionStatus {
  version: string;
  state: string;
  status?: { error_code?: string; error_message?: string };
  look?: ILook;
}

/** One model of `GET /v1/models` (nbserve's listing extension). */
export interface IModelStatus {
  name: string;
  model_version_status: IVersionStatus[];
  /** Why the model waits, when nbserve knows (e.g. a SavedModel saved without a version folder). */
  hint?: string | null;
  /** The look of a model with no version yet. */
  waiting?: ILook;
}

/** A discovery record plus the live status the server extension fetched for it. */
export interface IServerInfo {
  id: string;
  pid: number;
  host: string;
  rest_url: string | null;
  grpc_target: string | null;
  ports: { rest: number | null; grpc: number | null };
  started: number;
  models: string[];
  kernel_id?: string | null;
  /** The PATH / config the server was started from. */
  source?: string;
  /** "notebook": a kernel of this Jupyter server; "other": another process of this user. */
  group?: 'notebook' | 'other';
  /** The notebook's path (relative to the Jupyter root), when its kernel has a session. */
  notebook?: string | null;
  /** The card's name: the notebook's file name, `kernel <id>` or `process <pid>`. */
  title?: string;
  /** `<base_url>proxy/<rest port>/` when jupyter-server-proxy is installed, else null. */
  proxy_path?: string | null;
  /** False when the REST endpoint did not answer (or REST is off). */
  reachable: boolean;
  error?: string | null;
  live_models: IModelStatus[];
}

export interface IServersReply {
  servers: IServerInfo[];
  proxy_available: boolean;
  base_url: string;
}

/** The route of the server extension, under the Jupyter server's base_url. */
export function serversUrl(settings: ServerConnection.ISettings): string {
  return URLExt.join(settings.baseUrl, 'nbserve', 'api', 'servers');
}

/** An absolute URL for a server-relative path (e.g. the proxy path) as the browser sees it. */
export function absoluteUrl(path: string, settings: ServerConnection.ISettings): string {
  return new URL(path, settings.baseUrl || window.location.href).toString();
}

/** Every nbserve server running in this Jupyter server's kernels, with its live status. */
export async function fetchServers(
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<IServersReply> {
  const response = await ServerConnection.makeRequest(serversUrl(settings), {}, settings);
  if (!response.ok) {
    throw new Error(`GET nbserve/api/servers: HTTP ${response.status}`);
  }
  return (await response.json()) as IServersReply;
}
