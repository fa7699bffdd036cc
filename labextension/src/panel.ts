/**
 * The "Model servers" sidebar: the nbserve servers of this Jupyter server's kernels, each under
 * its notebook's name, then (under a separate heading) those of other processes of this user;
 * their endpoints (with copy buttons), models, versions and states. State words and colours come
 * from the server extension's JSON (`look`: nbserve.vocabulary), the same as in the notebook.
 *
 * Refreshed by polling `api.fetchServers` every `POLL_MS` while the panel is visible (one
 * request in flight at a time; the DOM is rebuilt only when the reply changed, so copy buttons
 * and the scroll position stay put). All text goes through `textContent` (no HTML injection).
 */
import { Clipboard } from '@jupyterlab/apputils';
import { ServerConnection } from '@jupyterlab/services';
import { LabIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import {
  absoluteUrl,
  fetchServers,
  ILook,
  IModelStatus,
  IServerInfo,
  IServersReply
} from './api';

/** What the empty sidebar suggests. */
export const EMPTY_HINT = 'No model server is running. Start one in a notebook:';
export const EMPTY_COMMAND = '%tfserve start ./export';

export const PANEL_ID = 'nbserve-model-servers';
export const POLL_MS = 2000;

const SERVER_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M4 3h16a1 1 0 0 1 1 1v5a1 1 0 0 1-1 1H4a1 1 0 0 1-1-1V4a1 1 0 0 1 1-1zm2 3v1h2V6zm-2 8h16a1 1 0 0 1 1 1v5a1 1 0 0 1-1 1H4a1 1 0 0 1-1-1v-5a1 1 0 0 1 1-1zm2 3v1h2v-1z"/>
  </g>
</svg>`;

export const serverIcon = new LabIcon({ name: 'nbserve:server', svgstr: SERVER_SVG });

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className: string,
  text?: string
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  node.className = className;
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

/** A row "label  value  [copy]"; the copy button puts `value` on the system clipboard. */
function endpointRow(label: string, value: string, kind: string): HTMLElement {
  const row = el('div', `nbserve-endpoint nbserve-endpoint-${kind}`);
  row.appendChild(el('span', 'nbserve-endpoint-label', label));
  const code = el('code', 'nbserve-endpoint-value', value);
  code.title = value;
  row.appendChild(code);
  const button = el('button', 'jp-Button nbserve-copy', 'copy');
  button.title = `Copy ${value}`;
  button.dataset.copy = value;
  button.addEventListener('click', () => {
    Clipboard.copyToSystem(value);
    button.textContent = 'copied';
    window.setTimeout(() => (button.textContent = 'copy'), 1200);
  });
  row.appendChild(button);
  return row;
}

/** A state badge (TF Serving's name) and its plain words, coloured by the shared vocabulary. */
function lookNodes(look: ILook | undefined, state: string): HTMLElement[] {
  const badge = el('span', `nbserve-badge ${look ? look.css_class : ''}`, look ? look.badge : state);
  const words = el('span', 'nbserve-words', look ? look.words : '');
  if (look) {
    badge.style.background = look.colour;
    badge.title = look.title;
    words.style.color = look.colour;
    words.title = look.words;
  }
  return [badge, words];
}

function modelBlock(model: IModelStatus): HTMLElement {
  const block = el('div', 'nbserve-model');
  block.dataset.model = model.name;
  block.appendChild(el('div', 'nbserve-model-name', model.name));
  if (model.hint) {
    block.appendChild(el('div', 'nbserve-model-hint', model.hint));
  }
  const table = el('table', 'nbserve-versions');
  const versions = model.model_version_status || [];
  if (versions.length === 0) {
    const row = table.insertRow();
    row.className = 'nbserve-version nbserve-version-none';
    const cell = row.insertCell();
    cell.colSpan = 2;
    for (const node of lookNodes(model.waiting, 'waiting')) {
      cell.appendChild(node);
    }
  }
  for (const v of versions) {
    const row = table.insertRow();
    row.className = `nbserve-version nbserve-state-${v.state}`;
    row.dataset.version = v.version;
    row.dataset.state = v.state;
    row.insertCell().textContent = `v${v.version}`;
    const state = row.insertCell();
    state.className = 'nbserve-version-state';
    for (const node of lookNodes(v.look, v.state)) {
      state.appendChild(node);
    }
  }
  block.appendChild(table);
  return block;
}

function serverCard(server: IServerInfo, settings: ServerConnection.ISettings): HTMLElement {
  const card = el('section', 'nbserve-server');
  card.dataset.serverId = server.id;
  card.dataset.group = server.group || 'other';
  const head = el('div', 'nbserve-server-head');
  const started = server.started ? new Date(server.started * 1000).toLocaleTimeString() : '';
  const title = el('span', 'nbserve-server-title', server.title || `process ${server.pid}`);
  title.title = [
    server.notebook ? `notebook ${server.notebook}` : '',
    server.kernel_id ? `kernel ${server.kernel_id}` : '',
    `pid ${server.pid}`,
    server.source ? `started from ${server.source}` : ''
  ]
    .filter(x => x)
    .join('\n');
  head.appendChild(title);
  head.appendChild(el('span', 'nbserve-server-started', started ? `since ${started}` : ''));
  card.appendChild(head);

  if (server.rest_url) {
    card.appendChild(endpointRow('REST', server.rest_url, 'rest'));
  }
  if (server.proxy_path) {
    card.appendChild(endpointRow('proxy', absoluteUrl(server.proxy_path, settings), 'proxy'));
  }
  if (server.grpc_target) {
    card.appendChild(endpointRow('gRPC', server.grpc_target, 'grpc'));
  }
  if (!server.reachable) {
    card.classList.add('nbserve-unreachable');
    card.appendChild(el('div', 'nbserve-server-error', `unreachable: ${server.error || 'no answer'}`));
    for (const name of server.models) {
      card.appendChild(modelBlock({ name, model_version_status: [] }));
    }
  } else {
    for (const model of server.live_models) {
      card.appendChild(modelBlock(model));
    }
  }
  return card;
}

/** The sidebar widget. Call `refresh()` to update at once; polling runs while visible. */
export class ModelServersPanel extends Widget {
  constructor(settings: ServerConnection.ISettings = ServerConnection.makeSettings()) {
    super();
    this._settings = settings;
    this.id = PANEL_ID;
    this.addClass('nbserve-panel');
    this.title.icon = serverIcon;
    this.title.caption = 'Model servers';
    this.node.appendChild(el('h2', 'nbserve-panel-title', 'Model servers'));
    this._status = el('div', 'nbserve-panel-status', 'loading…');
    this.node.appendChild(this._status);
    this._list = el('div', 'nbserve-server-list');
    this.node.appendChild(this._list);
  }

  /** Fetch once and redraw if anything changed; never throws (errors show in the panel). */
  async refresh(): Promise<void> {
    if (this._inFlight) {
      return;
    }
    this._inFlight = true;
    try {
      const reply = await fetchServers(this._settings);
      this._render(reply);
    } catch (error) {
      this._status.textContent = `error: ${String(error)}`;
      this._status.classList.add('nbserve-panel-status-error');
    } finally {
      this._inFlight = false;
    }
  }

  dispose(): void {
    this._stopPolling();
    super.dispose();
  }

  protected onAfterShow(): void {
    this._poll();
  }

  protected onBeforeHide(): void {
    this._stopPolling();
  }

  private _poll(): void {
    this._stopPolling();
    void this.refresh().then(() => {
      if (this.isVisible && !this.isDisposed) {
        this._timer = window.setTimeout(() => this._poll(), POLL_MS);
      }
    });
  }

  private _stopPolling(): void {
    if (this._timer !== null) {
      window.clearTimeout(this._timer);
      this._timer = null;
    }
  }

  private _render(reply: IServersReply): void {
    const n = reply.servers.length;
    this._status.classList.remove('nbserve-panel-status-error');
    if (n === 0) {
      this._status.replaceChildren(
        el('span', 'nbserve-empty', EMPTY_HINT),
        el('code', 'nbserve-empty-command', EMPTY_COMMAND)
      );
    } else {
      this._status.textContent = `${n} server${n === 1 ? '' : 's'} · updated ${new Date().toLocaleTimeString()}`;
    }
    const key = JSON.stringify(reply.servers);
    if (key === this._lastKey) {
      return;
    }
    this._lastKey = key;
    const mine = reply.servers.filter(s => s.group === 'notebook');
    const others = reply.servers.filter(s => s.group !== 'notebook');
    const nodes: HTMLElement[] = [];
    if (mine.length) {
      nodes.push(el('h3', 'nbserve-group nbserve-group-notebook', 'In this Jupyter server\'s notebooks'));
      nodes.push(...mine.map(s => serverCard(s, this._settings)));
    }
    if (others.length) {
      nodes.push(el('h3', 'nbserve-group nbserve-group-other', 'Other processes of this user'));
      nodes.push(...others.map(s => serverCard(s, this._settings)));
    }
    this._list.replaceChildren(...nodes);
  }

  private _settings: ServerConnection.ISettings;
  private _status: HTMLElement;
  private _list: HTMLElement;
  private _timer: number | null = null;
  private _inFlight = false;
  private _lastKey = '';
}
