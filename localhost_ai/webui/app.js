// The web page's logic: Alpine components (registered here, since the CSP build of Alpine
// evaluates no code written in attributes), the API calls with the key, and markdown that is
// rendered as text-safe HTML. Everything a model, a gallery or a user writes is text.
'use strict';

const KEY_STORE = 'localhost-ai.key';
const CHAT_STORE = 'localhost-ai.chat';
const PAGES = [
  { id: 'models', label: 'Models' },
  { id: 'gallery', label: 'Gallery' },
  { id: 'chat', label: 'Chat' },
  { id: 'images', label: 'Images' },
  { id: 'audio', label: 'Audio' },
];

// -- the API -----------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// The key lives in localStorage (or, where storage is refused, in the page only).
let keyInPage = '';

function apiKey() {
  try { return localStorage.getItem(KEY_STORE) || ''; } catch (refused) { return keyInPage; }
}

function setApiKey(key) {
  keyInPage = key;
  try { localStorage.setItem(KEY_STORE, key); } catch (refused) { /* kept in the page only */ }
}

// While the dialog asks for a key, one promise that resolves when it is given: calls made
// meanwhile wait for it rather than sending a key already refused.
let keyPrompt = null;
let keyGivenNow = null;

function askForKey(rejected) {
  if (!keyPrompt) {
    keyPrompt = new Promise(function (resolve) { keyGivenNow = resolve; });
    window.dispatchEvent(new CustomEvent('need-key', { detail: { rejected: rejected } }));
  }
  return keyPrompt;
}

function keyGiven() {
  const resolve = keyGivenNow;
  keyPrompt = null;
  keyGivenNow = null;
  if (resolve) resolve();
}

// Whether the server wants a key, asked once (an open route): the page asks for a key
// before its first call instead of after a 401.
let pageSettings = null;

function settings() {
  if (!pageSettings) {
    pageSettings = fetch('/webui/settings.json').then(function (r) { return r.json(); })
      .catch(function () { return { api_key_required: false }; });
  }
  return pageSettings;
}

// fetch with the bearer key; a 401 asks for a key and tries again. Answers the Response.
async function call(path, options) {
  options = options || {};
  if ((await settings()).api_key_required && !apiKey()) await askForKey(false);
  for (;;) {
    if (keyPrompt) await keyPrompt;
    const headers = Object.assign({}, options.headers || {});
    const key = apiKey();
    if (key) headers.Authorization = 'Bearer ' + key;
    const response = await fetch(path, Object.assign({}, options, { headers: headers }));
    if (response.status === 401) {
      if (apiKey() === key) await askForKey(Boolean(key));  // else a new key came meanwhile: try it
      continue;
    }
    if (!response.ok) {
      let message = response.status + ' ' + response.statusText;
      try {
        const body = await response.json();
        if (body && body.error && body.error.message) message = body.error.message;
      } catch (ignored) { /* not JSON */ }
      throw new ApiError(response.status, message);
    }
    return response;
  }
}

async function getJson(path) { return (await call(path)).json(); }

// The JSON and the headers: a paged list says in X-Total-Count how many there are in all.
async function getJsonAndHeaders(path) {
  const response = await call(path);
  return { body: await response.json(), headers: response.headers };
}

async function postJson(path, body, method) {
  const response = await call(path, {
    method: method || 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
  });
  return response.json();
}

// The server's models, shared by every page (and refreshed by the models page's poll).
const catalogue = { models: [], listeners: [] };

async function refreshCatalogue() {
  const system = await getJson('/system');
  catalogue.system = system;
  catalogue.models = system.models;
  catalogue.listeners.forEach(function (listener) { listener(system); });
  return system;
}

function onCatalogue(listener) {
  catalogue.listeners.push(listener);
  if (catalogue.system) listener(catalogue.system);
}

function able(models, capability) {
  return models.filter(function (m) { return m.capabilities.indexOf(capability) >= 0; });
}

// The model chosen before if it is still there, else the first one.
function keep(models, current) {
  return models.some(function (m) { return m.id === current; }) ? current : (models.length ? models[0].id : '');
}

// -- text ---------------------------------------------------------------------------------

function formatBytes(value) {
  if (value === null || value === undefined) return '';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let size = value;
  let unit = 0;
  while (size >= 1024 && unit < units.length - 1) { size /= 1024; unit += 1; }
  return (unit ? size.toFixed(1) : String(size)) + ' ' + units[unit];
}

function formatSeconds(value) {
  if (value === null || value === undefined) return '';
  if (value < 60) return Math.ceil(value) + ' s';
  return Math.floor(value / 60) + ' min ' + Math.ceil(value % 60) + ' s';
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, function (c) {
    return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c];
  });
}

let markdownReady = false;

// Markdown to HTML where the model's own HTML is shown as text, images become links (no
// request leaves for another host), and DOMPurify removes whatever else could run.
function renderMarkdown(text) {
  if (!markdownReady) {
    window.marked.use({
      gfm: true,
      breaks: true,
      renderer: {
        html: function (token) { return escapeHtml(token.raw || token.text || ''); },
        image: function (token) {
          return '<a href="' + escapeHtml(token.href) + '" rel="noopener noreferrer" target="_blank">' +
            escapeHtml(token.text || token.href) + '</a>';
        },
      },
    });
    // Links open in a new tab: following one must not end a stream or lose the page.
    window.DOMPurify.addHook('afterSanitizeAttributes', function (node) {
      if (node.tagName === 'A' && node.hasAttribute('href')) {
        node.setAttribute('target', '_blank');
        node.setAttribute('rel', 'noopener noreferrer');
      }
    });
    markdownReady = true;
  }
  const html = window.marked.parse(text || '', { async: false });
  return window.DOMPurify.sanitize(html, { FORBID_TAGS: ['img', 'style', 'form', 'input', 'button', 'textarea'] });
}

// -- the components -----------------------------------------------------------------------

document.addEventListener('alpine:init', function () {
  const Alpine = window.Alpine;

  Alpine.directive('markdown', function (el, directive, tools) {
    const value = tools.evaluateLater(directive.expression);
    tools.effect(function () {
      value(function (text) { el.innerHTML = renderMarkdown(text); });
    });
  });

  Alpine.data('shell', function () {
    return {
      page: 'models',
      pages: PAGES.map(function (p) { return Object.assign({ href: '#' + p.id }, p); }),
      status: { version: '', loaded: [], requests: 0, generated: 0, queued: 0, error: '' },
      keyInput: '',
      keyRejected: false,
      init() {
        const self = this;
        this.route();
        window.addEventListener('hashchange', function () { self.route(); });
        window.addEventListener('need-key', function (event) { self.showKeyDialog(event.detail.rejected); });
        window.addEventListener('refresh-status', function () { self.poll(); });
        this.poll();
        setInterval(function () { self.poll(); }, 3000);
      },
      route() {
        const id = location.hash.slice(1);
        this.page = PAGES.some(function (p) { return p.id === id; }) ? id : 'models';
        document.title = PAGES.find(function (p) { return p.id === this.page; }, this).label + ' · localhost-ai';
      },
      showKeyDialog(rejected) {
        this.keyRejected = rejected;
        const dialog = document.getElementById('key-dialog');
        if (!dialog.open) dialog.showModal();
      },
      saveKey() {
        setApiKey(this.keyInput.trim());
        this.keyInput = '';
        keyGiven();
      },
      keyClosed() {  // closed with Escape while calls wait for a key: nothing works without one
        if (keyPrompt) this.showKeyDialog(this.keyRejected);
      },
      async poll() {
        try {
          const system = await refreshCatalogue();
          const text = await (await call('/metrics')).text();
          this.status = {
            version: system.version,
            loaded: system.models.filter(function (m) { return m.loaded; }).map(function (m) { return m.id; }),
            requests: sumMetric(text, 'localhost_ai_requests_total'),
            generated: sumMetric(text, 'localhost_ai_generated_tokens_total'),
            queued: sumMetric(text, 'localhost_ai_queue_length'),
            error: '',
          };
        } catch (error) {
          this.status.error = error instanceof ApiError ? error.message : 'The server does not answer.';
        }
      },
    };
  });

  Alpine.data('models', function () {
    return {
      list: [],
      invalid: [],
      folder: '',
      error: '',
      init() {
        const self = this;
        onCatalogue(function (system) {
          self.list = system.models;
          self.invalid = system.invalid;
          self.folder = system.models_path;
        });
        setInterval(function () { if (self.page === 'models') self.refresh(); }, 1000);
      },
      formatBytes: formatBytes,
      async refresh() {
        try { await refreshCatalogue(); this.error = ''; } catch (error) { this.error = error.message; }
      },
      async act(path, body) {
        this.error = '';
        try { await postJson(path, body); } catch (error) { this.error = error.message; }
        await this.refresh();
        window.dispatchEvent(new Event('refresh-status'));
      },
      load(m) { m.state = 'loading'; return this.act('/backend/load', { model: m.id }); },
      unload(m) { return this.act('/backend/shutdown', { model: m.id }); },
      remove(m) {
        if (!confirm('Delete ' + m.id + ' and its files?')) return null;
        return this.act('/models/delete/' + encodeURIComponent(m.id), {});
      },
    };
  });

  Alpine.data('gallery', function () {
    // The server searches, filters and pages; only the answer to the latest question is shown.
    let asked = 0;
    let typing = null;
    let listFailed = '';  // what the last failed list said: the next answer clears that, not other errors
    return {
      entries: [],
      total: 0,
      galleries: [],
      tags: [],
      jobs: {},
      query: '',
      galleryFilter: '',
      tagFilter: '',
      installedOnly: false,
      pageIndex: 0,
      pageSize: 24,
      newName: '',
      newUrl: '',
      error: '',
      loaded: false,
      init() {
        const self = this;
        this.$watch('page', function (page) { if (page === 'gallery' && !self.loaded) self.open(); });
        this.$watch('query', function () {
          clearTimeout(typing);
          typing = setTimeout(function () { self.first(); }, 250);
        });
        ['galleryFilter', 'tagFilter', 'installedOnly'].forEach(function (name) {
          self.$watch(name, function () { self.first(); });
        });
        if (this.page === 'gallery') this.open();
      },
      async open() {
        await this.refresh();
        try {  // installs still running (started before a reload, or elsewhere) are followed too
          const running = await getJson('/models/jobs');
          const self = this;
          Object.values(running).forEach(function (job) {
            if (job.processed || self.jobs[job.uuid]) return;
            self.jobs[job.uuid] = { uuid: job.uuid, name: job.gallery_element_name, progress: job.progress,
              message: job.message, detail: jobDetail(job), processed: false };
            self.follow(job.uuid);
          });
        } catch (error) { this.error = error.message; }
      },
      async refresh() {
        try {
          const lists = await Promise.all([getJson('/models/galleries'), getJson('/models/available/tags'),
            this.list()]);
          this.galleries = lists[0];
          this.tags = lists[1];
          this.loaded = true;
          // A filter on a gallery or a tag that is gone would show nothing (the watch asks again).
          const self = this;
          if (!this.galleries.some(function (g) { return g.name === self.galleryFilter; })) this.galleryFilter = '';
          if (!this.tags.some(function (t) { return t.tag === self.tagFilter; })) this.tagFilter = '';
        } catch (error) { this.error = error.message; }
      },
      async list() {
        clearTimeout(typing);
        const mine = ++asked;
        const query = new URLSearchParams({ page: String(this.pageIndex + 1), page_size: String(this.pageSize) });
        if (this.query.trim()) query.set('search', this.query.trim());
        if (this.galleryFilter) query.set('gallery', this.galleryFilter);
        if (this.tagFilter) query.set('tag', this.tagFilter);
        if (this.installedOnly) query.set('installed', 'true');
        let answer;
        try {
          answer = await getJsonAndHeaders('/models/available?' + query.toString());
        } catch (error) {
          if (mine === asked) this.error = listFailed = error.message;
          return;
        }
        if (mine !== asked) return;
        this.entries = answer.body;
        this.total = Number(answer.headers.get('X-Total-Count')) || answer.body.length;
        if (listFailed && this.error === listFailed) this.error = '';
        listFailed = '';
        if (!this.entries.length && this.pageIndex > 0) {  // the page went away (a delete, a gallery removed)
          this.pageIndex = Math.max(0, this.pages - 1);
          if (this.total) await this.list();
        }
      },
      get countText() { return this.total === 1 ? '1 model' : this.total + ' models'; },
      get pages() { return Math.max(1, Math.ceil(this.total / this.pageSize)); },
      get jobList() { return Object.values(this.jobs); },
      first() { this.pageIndex = 0; return this.list(); },
      previous() { this.pageIndex = Math.max(0, this.pageIndex - 1); return this.list(); },
      next() { this.pageIndex = Math.min(this.pages - 1, this.pageIndex + 1); return this.list(); },
      busy(e) { return this.jobList.some(function (j) { return j.name === e.id && !j.processed; }); },
      async install(e) {
        this.error = '';
        try {
          const started = await postJson('/models/apply', { id: e.id });
          this.jobs[started.uuid] = { uuid: started.uuid, name: e.id, progress: 0, message: 'waiting', detail: '', processed: false };
          this.follow(started.uuid);
        } catch (error) { this.error = error.message; }
      },
      async follow(uuid) {
        for (;;) {
          let job = null;
          try {
            job = await getJson('/models/jobs/' + uuid);
          } catch (error) {
            if (error.status === 404) { delete this.jobs[uuid]; return; }  // forgotten by the server
            this.error = error.message;  // the server did not answer: try again
          }
          const shown = this.jobs[uuid];
          if (!shown) return;
          if (!job) {
            await new Promise(function (resolve) { setTimeout(resolve, 2000); });
            continue;
          }
          this.error = '';
          shown.progress = job.processed && !job.error && !job.cancelled ? 100 : job.progress;
          shown.processed = job.processed;
          shown.message = job.error ? 'failed: ' + job.error : job.cancelled ? 'cancelled' : job.message;
          shown.detail = jobDetail(job);
          if (job.processed) {
            await this.list();
            refreshCatalogue().catch(function () { /* the status strip says so */ });
            return;
          }
          await new Promise(function (resolve) { setTimeout(resolve, 400); });
        }
      },
      async cancel(job) {
        try { await postJson('/models/jobs/' + job.uuid + '/cancel', {}); } catch (error) { this.error = error.message; }
      },
      dismiss(job) { delete this.jobs[job.uuid]; },
      async remove(e) {
        if (!confirm('Delete ' + e.name + ' and its files?')) return;
        this.error = '';
        try { await postJson('/models/delete/' + encodeURIComponent(e.name), {}); } catch (error) { this.error = error.message; }
        await this.list();
      },
      async addGallery() {
        this.error = '';
        try {
          await postJson('/models/galleries', { name: this.newName.trim(), url: this.newUrl.trim() });
          this.newName = '';
          this.newUrl = '';
        } catch (error) { this.error = error.message; }
        await this.refresh();
      },
      async removeGallery(g) {
        this.error = '';
        try { await postJson('/models/galleries', { name: g.name }, 'DELETE'); } catch (error) { this.error = error.message; }
        await this.refresh();
      },
    };
  });

  Alpine.data('chat', function () {
    const saved = stored(CHAT_STORE);
    return {
      models: [],
      model: typeof saved.model === 'string' ? saved.model : '',
      system: typeof saved.system === 'string' ? saved.system : '',
      temperature: saved.temperature === undefined ? 0.7 : saved.temperature,
      topP: saved.topP === undefined ? 0.95 : saved.topP,
      maxTokens: saved.maxTokens === undefined ? 512 : saved.maxTokens,
      seed: saved.seed === undefined ? '' : saved.seed,
      messages: Array.isArray(saved.messages) ? saved.messages.filter(function (m) {
        return m && (m.role === 'user' || m.role === 'assistant') && typeof m.content === 'string';
      }).map(function (m) {
        const images = Array.isArray(m.images) ? m.images.filter(function (i) { return typeof i === 'string'; }) : [];
        return { role: m.role, content: m.content, model: String(m.model || ''), stats: String(m.stats || ''), images: images };
      }) : [],
      input: '',
      attached: [],
      streaming: false,
      controller: null,
      error: '',
      init() {
        const self = this;
        onCatalogue(function (system) {
          self.models = able(system.models, 'chat');
          self.model = keep(self.models, self.model);
        });
      },
      get canSeeImages() {
        const self = this;
        const chosen = this.models.find(function (m) { return m.id === self.model; });
        return Boolean(chosen && chosen.capabilities.indexOf('vision') >= 0);
      },
      save() {
        const state = {
          model: this.model, system: this.system, temperature: this.temperature, topP: this.topP,
          maxTokens: this.maxTokens, seed: this.seed, messages: this.messages,
        };
        try {
          localStorage.setItem(CHAT_STORE, JSON.stringify(state));
        } catch (full) {  // images can outgrow the storage: keep the words
          state.messages = this.messages.map(function (m) { return Object.assign({}, m, { images: [] }); });
          try { localStorage.setItem(CHAT_STORE, JSON.stringify(state)); } catch (ignored) { /* kept in the page only */ }
        }
      },
      clear() { this.messages = []; this.error = ''; this.save(); },
      enter(event) {
        if (event.shiftKey || event.isComposing) return;
        event.preventDefault();
        if (!this.streaming) this.send();
      },
      attach(event) {
        const self = this;
        Array.from(event.target.files).forEach(function (file) {
          const reader = new FileReader();
          reader.onload = function () { self.attached.push(reader.result); };
          reader.readAsDataURL(file);
        });
        event.target.value = '';
      },
      request() {
        const messages = [];
        if (this.system.trim()) messages.push({ role: 'system', content: this.system });
        this.messages.forEach(function (m) {
          if (m.role === 'assistant' && !m.content) return;
          if (m.images && m.images.length) {
            const parts = [{ type: 'text', text: m.content }];
            m.images.forEach(function (url) { parts.push({ type: 'image_url', image_url: { url: url } }); });
            messages.push({ role: m.role, content: parts });
          } else {
            messages.push({ role: m.role, content: m.content });
          }
        });
        const body = {
          model: this.model, messages: messages, stream: true, stream_options: { include_usage: true },
          temperature: Number(this.temperature), top_p: Number(this.topP), max_tokens: Number(this.maxTokens),
        };
        if (this.seed !== '' && this.seed !== null) body.seed = Number(this.seed);
        return body;
      },
      async send() {
        const text = this.input.trim();
        if (!text || !this.model || this.streaming) return;
        this.error = '';
        this.messages.push({ role: 'user', content: text, images: this.attached });
        this.input = '';
        this.attached = [];
        const body = this.request();
        this.messages.push({ role: 'assistant', model: this.model, content: '', stats: '' });
        const reply = this.messages[this.messages.length - 1];
        this.streaming = true;
        this.controller = new AbortController();
        const started = performance.now();
        let first = null;
        let chunks = 0;
        let usage = null;
        let complete = false;
        try {
          const response = await call('/v1/chat/completions', {
            method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
            signal: this.controller.signal,
          });
          complete = await readEvents(response, function (chunk) {
            if (chunk.usage) usage = chunk.usage;
            const choice = chunk.choices && chunk.choices[0];
            const delta = choice && choice.delta && choice.delta.content;
            if (delta) {
              if (first === null) first = performance.now();
              chunks += 1;
              reply.content += delta;
            }
          });
          if (!complete) this.error = 'The answer was cut off: the connection closed before it ended.';
        } catch (error) {
          if (error.name !== 'AbortError') this.error = error.message;
        } finally {
          const stopped = this.controller.signal.aborted;
          if (!complete && !stopped) this.controller.abort();  // a failed read: the server stops too
          const ended = performance.now();
          const tokens = usage ? usage.completion_tokens : chunks;
          const rate = first !== null && ended > first && tokens > 1 ? (tokens - 1) / ((ended - first) / 1000) : null;
          reply.stats = [
            usage ? usage.prompt_tokens + ' prompt tokens' : '',
            (usage ? '' : 'about ') + tokens + ' tokens',
            rate !== null ? rate.toFixed(1) + ' tokens/s' : '',
            first !== null ? 'first token ' + ((first - started) / 1000).toFixed(2) + ' s' : '',
            stopped ? 'stopped' : '',
          ].filter(Boolean).join(' · ');
          this.streaming = false;
          this.controller = null;
          this.save();
          window.dispatchEvent(new Event('refresh-status'));
        }
      },
      stop() { if (this.controller) this.controller.abort(); },
    };
  });

  Alpine.data('images', function () {
    return {
      models: [],
      model: '',
      prompt: '',
      sizes: ['256x256', '512x512', '768x768', '1024x1024'],
      size: '512x512',
      steps: 20,
      seed: '',
      n: 1,
      results: [],
      running: false,
      error: '',
      init() {
        const self = this;
        onCatalogue(function (system) {
          self.models = able(system.models, 'image');
          self.model = keep(self.models, self.model);
        });
      },
      async generate() {
        this.error = '';
        this.running = true;
        const body = { model: this.model, prompt: this.prompt, size: this.size, steps: Number(this.steps),
          n: Number(this.n), response_format: 'b64_json' };
        if (this.seed !== '' && this.seed !== null) body.seed = Number(this.seed);
        try {
          const answer = await postJson('/v1/images/generations', body);
          const self = this;
          answer.data.forEach(function (item, i) {
            const id = answer.created + '-' + i + '-' + self.results.length;
            self.results.unshift({ id: id, src: 'data:image/png;base64,' + item.b64_json, prompt: self.prompt,
              file: 'image-' + id + '.png' });
          });
        } catch (error) { this.error = error.message; }
        this.running = false;
      },
    };
  });

  Alpine.data('audio', function () {
    return {
      sttModels: [],
      ttsModels: [],
      sttModel: '',
      ttsModel: '',
      clip: null,
      clipName: '',
      recording: false,
      recorder: null,
      canRecord: Boolean(navigator.mediaDevices && window.MediaRecorder),
      transcript: '',
      transcribing: false,
      text: '',
      speech: '',
      speaking: false,
      error: '',
      init() {
        const self = this;
        onCatalogue(function (system) {
          self.sttModels = able(system.models, 'transcription');
          self.ttsModels = able(system.models, 'speech');
          self.sttModel = keep(self.sttModels, self.sttModel);
          self.ttsModel = keep(self.ttsModels, self.ttsModel);
        });
      },
      pick(event) {
        const file = event.target.files[0];
        this.clip = file || null;
        this.clipName = file ? file.name : '';
      },
      async record() {
        this.error = '';
        try {
          const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
          const pieces = [];
          const self = this;
          this.recorder = new MediaRecorder(stream);
          this.recorder.ondataavailable = function (event) { pieces.push(event.data); };
          this.recorder.onstop = function () {
            stream.getTracks().forEach(function (track) { track.stop(); });
            const type = self.recorder.mimeType || 'audio/webm';
            self.clip = new File(pieces, 'recording.' + (type.indexOf('ogg') >= 0 ? 'ogg' : 'webm'), { type: type });
            self.clipName = self.clip.name;
            self.recording = false;
          };
          this.recorder.start();
          this.recording = true;
        } catch (error) { this.error = 'Recording is not possible here: ' + error.message; }
      },
      stopRecording() { if (this.recorder) this.recorder.stop(); },
      async transcribe() {
        this.error = '';
        this.transcribing = true;
        const form = new FormData();
        form.append('model', this.sttModel);
        form.append('file', this.clip, this.clip.name);
        try {
          const answer = await (await call('/v1/audio/transcriptions', { method: 'POST', body: form })).json();
          this.transcript = answer.text;
        } catch (error) { this.error = error.message; }
        this.transcribing = false;
      },
      async speak() {
        this.error = '';
        this.speaking = true;
        try {
          const response = await call('/v1/audio/speech', {
            method: 'POST', headers: { 'Content-Type': 'application/json' },
            body: JSON.stringify({ model: this.ttsModel, input: this.text, response_format: 'wav' }),
          });
          if (this.speech) URL.revokeObjectURL(this.speech);
          this.speech = URL.createObjectURL(await response.blob());
        } catch (error) { this.error = error.message; }
        this.speaking = false;
      },
    };
  });
});

// -- helpers ------------------------------------------------------------------------------

// What the page kept in localStorage under `key`, or {} when there is nothing readable.
function stored(key) {
  try {
    const value = JSON.parse(localStorage.getItem(key) || '{}');
    return value && typeof value === 'object' && !Array.isArray(value) ? value : {};
  } catch (ignored) {
    return {};
  }
}

// Calls `each` with every JSON chunk of a server-sent event stream; true once [DONE] came,
// false when the stream ended without it.
async function readEvents(response, each) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const part = await reader.read();
    if (part.done) return false;
    buffer += decoder.decode(part.value, { stream: true });
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block.split('\n').filter(function (line) { return line.startsWith('data:'); })
        .map(function (line) { return line.slice(5).trim(); }).join('\n');
      if (!data) continue;
      if (data === '[DONE]') return true;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new ApiError(500, chunk.error.message || 'The stream failed.');
      each(chunk);
    }
  }
}

function sumMetric(text, name) {
  let total = 0;
  text.split('\n').forEach(function (line) {
    if (line.startsWith(name + '{') || line.startsWith(name + ' ')) total += Number(line.slice(line.lastIndexOf(' ') + 1)) || 0;
  });
  return Math.round(total);
}

function jobDetail(job) {
  const parts = [];
  if (job.downloaded_bytes) {
    parts.push(formatBytes(job.downloaded_bytes) + (job.total_bytes ? ' of ' + formatBytes(job.total_bytes) : ''));
  }
  if (job.bytes_per_second) parts.push(formatBytes(job.bytes_per_second) + '/s');
  if (job.eta_seconds !== null && job.eta_seconds !== undefined && !job.processed) {
    parts.push(formatSeconds(job.eta_seconds) + ' left');
  }
  return parts.join(' · ');
}
