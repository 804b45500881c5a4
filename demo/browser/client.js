// The browser side of `plc demo serve` (demo/serve.py): a call sends the microphone to the server,
// which loses packets on a simulated network, conceals them and sends the result back (an echo).
// `window.plcDemo` is the page's API (the page's controls use it; so does the headless browser test).
'use strict';

const plcDemo = (() => {
  async function request(method, path, body) {
    const init = {method, headers: {}};
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const resp = await fetch(path, init);
    const data = await resp.json().catch(() => ({error: `HTTP ${resp.status}`}));
    if (!resp.ok) throw new Error(data.error || `HTTP ${resp.status}`);
    return data;
  }

  function openMicrophone(voiceProcessing = true) {
    const vp = !!voiceProcessing;
    return navigator.mediaDevices.getUserMedia({
      audio: {echoCancellation: vp, noiseSuppression: vp, autoGainControl: vp}, video: false});
  }

  function iceGatheringComplete(pc, timeoutMs = 5000) {
    if (pc.iceGatheringState === 'complete') return Promise.resolve();
    return new Promise(resolve => {
      const done = () => { pc.removeEventListener('icegatheringstatechange', check); resolve(); };
      const check = () => { if (pc.iceGatheringState === 'complete') done(); };
      pc.addEventListener('icegatheringstatechange', check);
      setTimeout(done, timeoutMs);  // send what was gathered: host candidates come first
    });
  }

  const calls = new Set();

  class Call {
    // settings: {method, loss ("none" | "bernoulli:P" | "gilbert:P,B"), jitter_ms, seed}
    constructor(settings) {
      this.settings = Object.assign({}, settings);
      this.id = null;
      this.pc = null;
      this.remoteStream = null;
      this.audio = null;
      this.history = [];
    }

    // Sends `micStream` (or nothing until `send`); plays the echo unless `play` is false.
    // Resolves once the server answered.
    async start(micStream = null, {play = true} = {}) {
      const pc = this.pc = new RTCPeerConnection({iceServers: []});
      calls.add(this);
      if (micStream) micStream.getAudioTracks().forEach(t => pc.addTrack(t, micStream));
      else pc.addTransceiver('audio', {direction: 'sendrecv'});
      const remote = new Promise(resolve => pc.addEventListener('track', e => {
        resolve(e.streams[0] || new MediaStream([e.track]));
      }));
      await pc.setLocalDescription(await pc.createOffer());
      await iceGatheringComplete(pc);
      const answer = await request('POST', '/offer',
        Object.assign({sdp: pc.localDescription.sdp, type: 'offer'}, this.settings));
      this.id = answer.id;
      await pc.setRemoteDescription({sdp: answer.sdp, type: answer.type});
      this.remoteStream = await remote;
      // Chrome only renders a remote WebRTC stream into Web Audio while a media element plays it
      this.audio = new Audio();
      this.audio.muted = !play;
      this.audio.srcObject = this.remoteStream;
      this.audio.play().catch(() => {});
      return this;
    }

    // Starts (or changes) what the call sends, without renegotiating.
    send(micStream) {
      const sender = this.pc.getTransceivers().find(t => t.receiver.track.kind === 'audio').sender;
      return sender.replaceTrack(micStream.getAudioTracks()[0]);
    }

    connected(timeoutMs = 20000) {
      const pc = this.pc;
      return new Promise((resolve, reject) => {
        const check = () => {
          if (pc.connectionState === 'connected') { pc.removeEventListener('connectionstatechange', check); resolve(); }
          else if (pc.connectionState === 'failed' || pc.connectionState === 'closed') reject(new Error(`connection ${pc.connectionState}`));
        };
        pc.addEventListener('connectionstatechange', check);
        setTimeout(() => reject(new Error('not connected in time')), timeoutMs);
        check();
      });
    }

    // Change method and/or network on the live call (no renegotiation).
    async update(settings) {
      Object.assign(this.settings, settings);
      return request('POST', `/calls/${this.id}/settings`, settings);
    }

    async stats() {
      const s = await request('GET', `/calls/${this.id}/stats`);
      this.history.push(Object.assign({t: performance.now() / 1000}, s));
      if (this.history.length > 400) this.history.shift();
      return s;
    }

    // The echo as heard by this page: `seconds` of the remote stream at 48 kHz (Float32Array, mono).
    async recordEcho(seconds) {
      const ctx = new AudioContext({sampleRate: 48000});
      try {
        await ctx.audioWorklet.addModule('/recorder.js');
        const source = ctx.createMediaStreamSource(this.remoteStream);
        const node = new AudioWorkletNode(ctx, 'echo-recorder',
          {processorOptions: {samples: Math.round(seconds * ctx.sampleRate)}});
        const done = new Promise(resolve => { node.port.onmessage = e => resolve(e.data); });
        const mute = ctx.createGain();
        mute.gain.value = 0;
        source.connect(node);
        node.connect(mute).connect(ctx.destination);  // pulled by the destination, heard by no one
        if (ctx.state !== 'running') await ctx.resume();
        return await done;
      } finally {
        await ctx.close();
      }
    }

    close() {
      calls.delete(this);
      if (this.id) request('POST', `/calls/${this.id}/close`).catch(() => {});
      if (this.audio) this.audio.srcObject = null;
      if (this.pc) this.pc.close();
    }
  }

  // A closed or reloaded tab ends its calls on the server at once.
  window.addEventListener('pagehide', () => {
    for (const call of calls) if (call.id) navigator.sendBeacon(`/calls/${call.id}/close`);
  });

  function int16Base64(samples) {
    const pcm = new Int16Array(samples.length);
    for (let i = 0; i < samples.length; i++) pcm[i] = Math.max(-32768, Math.min(32767, Math.round(samples[i] * 32767)));
    const bytes = new Uint8Array(pcm.buffer);
    let s = '';
    for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    return btoa(s);
  }

  return {request, openMicrophone, Call, calls, int16Base64, config: null, ui: null};
})();
window.plcDemo = plcDemo;

// ------------------------------------------------------------------ the page
(() => {
  const $ = id => document.getElementById(id);
  const ui = plcDemo.ui = {call: null, mic: null, timer: null};

  function lossSpec() {
    const model = $('lossModel').value, p = Number($('lossPercent').value) / 100;
    if (model === 'none' || !(p > 0)) return 'none';
    return model === 'bernoulli' ? `bernoulli:${p}` : `gilbert:${p},${Number($('burst').value)}`;
  }

  function settings() {
    return {method: $('method').value, loss: lossSpec(), jitter_ms: Number($('jitter').value),
            seed: Math.max(0, Math.floor(Number($('seed').value) || 0))};
  }

  function setState(text, cls) { $('state').textContent = text; $('state').className = cls || ''; }
  function showError(e) { $('error').textContent = e ? String(e.message || e) : ''; }

  async function connect() {
    showError(null);
    $('connect').disabled = true;
    try {
      setState('opening the microphone…');
      ui.mic = await plcDemo.openMicrophone($('voiceProcessing').checked);
      setState('connecting…');
      const call = ui.call = new plcDemo.Call(settings());
      await call.start(ui.mic, {play: true});
      $('echo').srcObject = call.remoteStream;
      $('callId').textContent = `(${call.id})`;
      call.pc.addEventListener('connectionstatechange', () =>
        setState(call.pc.connectionState, call.pc.connectionState));
      await call.connected();
      setState('connected', 'connected');
      $('hangup').disabled = false;
      ui.timer = setInterval(poll, 1000);
    } catch (e) {
      showError(e); setState('error', 'error'); hangup();
    }
  }

  function hangup() {
    if (ui.timer) clearInterval(ui.timer);
    ui.timer = null;
    if (ui.call) ui.call.close();
    if (ui.mic) ui.mic.getTracks().forEach(t => t.stop());
    ui.call = ui.mic = null;
    $('connect').disabled = false;
    $('hangup').disabled = true;
    if ($('state').textContent !== 'error') setState('not connected');
  }

  async function apply(fields) {
    if (!ui.call) return;
    const all = settings(), change = {};
    for (const f of fields) change[f] = all[f];
    try { showError(null); await ui.call.update(change); poll(); } catch (e) { showError(e); }
  }

  async function poll() {
    if (!ui.call) return;
    try { render(await ui.call.stats()); draw(ui.call.history); } catch (e) { showError(e); }
  }

  const fmt = (v, d = 0) => (v === null || v === undefined || Number.isNaN(v)) ? '–' : Number(v).toFixed(d);

  function render(s) {
    const r = s.receiver, n = s.network, rate = r.sampleRate || 16000;
    const emitted = r.jitterBufferEmittedCount;
    const rows = [
      ['method', s.method],
      ['packets from the browser', n.packets],
      ['dropped by the network', `${n.dropped} (${fmt(100 * n.dropped / Math.max(1, n.packets), 1)} %)`],
      ['concealment events', r.concealmentEvents],
      ['concealed', `${fmt(1000 * r.concealedSamples / rate)} ms`],
      ['of which silent', `${fmt(1000 * r.silentConcealedSamples / rate)} ms`],
      ['jitter buffer delay (mean)', `${emitted ? fmt(1000 * r.jitterBufferDelay / emitted) : '–'} ms`],
      ['target delay (now)', `${fmt(r.targetDelayMs)} ms`],
      ['Opus mode of your browser', r.codecMode || '-'],
      ['fallback frames', r.fallbackFrames + (r.fallbackReason ? ` (${r.fallbackReason})` : '')],
    ];
    for (const key of Object.keys(r)) if (/fec/i.test(key)) rows.push([key, r[key]]);
    rows.push(['echo level', `${fmt(s.echo.levelDbfs, 1)} dBFS`]);
    $('stats').innerHTML = '';
    for (const [k, v] of rows) {
      const tr = $('stats').insertRow();
      tr.insertCell().textContent = k;
      const td = tr.insertCell(); td.textContent = v; td.className = 'v';
    }
  }

  // Two panels over the last minute: delays (ms) above, network loss and concealment (% of time) below.
  function draw(history) {
    const canvas = $('plot'), g = canvas.getContext('2d');
    const W = canvas.width, H = canvas.height, left = 48, right = 12, gap = 26;
    g.clearRect(0, 0, W, H);
    g.font = '12px system-ui, sans-serif';
    const pts = [];
    for (let i = 1; i < history.length; i++) {
      const a = history[i - 1], b = history[i], dt = b.t - a.t;
      if (dt <= 0) continue;
      const ra = a.receiver, rb = b.receiver, rate = rb.sampleRate || 16000;
      const de = rb.jitterBufferEmittedCount - ra.jitterBufferEmittedCount;
      const dp = b.network.packets - a.network.packets;
      pts.push({t: b.t, method: b.method, changed: b.method !== a.method,
                delay: de > 0 ? 1000 * (rb.jitterBufferDelay - ra.jitterBufferDelay) / de : null,
                target: rb.targetDelayMs,
                loss: dp > 0 ? 100 * (b.network.dropped - a.network.dropped) / dp : 0,
                concealed: 100 * (rb.concealedSamples - ra.concealedSamples) / (rate * dt),
                silent: 100 * (rb.silentConcealedSamples - ra.silentConcealedSamples) / (rate * dt)});
    }
    const tEnd = pts.length ? pts[pts.length - 1].t : 0;
    const span = Math.max(10, Math.min(60, pts.length ? tEnd - pts[0].t : 0));
    const x = t => left + (W - left - right) * (1 - (tEnd - t) / span);
    const panelH = (H - gap * 2) / 2;
    const panels = [
      {top: gap - 8, title: 'jitter buffer delay (ms)', series: [['delay', '#2f6fd6', 'playout delay'], ['target', '#9aa5b1', 'target']]},
      {top: gap * 2 + panelH - 8, title: '% of each second',
       series: [['loss', '#e0892b', 'packets dropped'], ['concealed', '#c62828', 'audio concealed'],
                ['silent', '#6d3fb0', 'of it silence']]},
    ];
    for (const p of panels) {
      let ymax = 10;
      for (const q of pts) for (const [k] of p.series) if (q[k] !== null && q.t > tEnd - span) ymax = Math.max(ymax, q[k]);
      ymax = Math.ceil(ymax * 1.15 / 10) * 10;
      const y = v => p.top + panelH - panelH * v / ymax;
      g.strokeStyle = '#dde1e7'; g.fillStyle = '#4a5563'; g.lineWidth = 1;
      for (let k = 0; k <= 2; k++) {
        const v = ymax * k / 2;
        g.beginPath(); g.moveTo(left, y(v)); g.lineTo(W - right, y(v)); g.stroke();
        g.fillText(String(Math.round(v)), 6, y(v) + 4);
      }
      g.fillStyle = '#1d232b'; g.fillText(p.title, left, p.top - 4);
      let lx = left + 190;
      for (const [k, color, label] of p.series) {
        g.strokeStyle = color; g.lineWidth = 2; g.beginPath();
        let first = true;
        for (const q of pts) {
          if (q[k] === null || q.t < tEnd - span) { first = true; continue; }
          if (first) g.moveTo(x(q.t), y(q[k])); else g.lineTo(x(q.t), y(q[k]));
          first = false;
        }
        g.stroke();
        g.fillStyle = color; g.fillRect(lx, p.top - 12, 12, 3); g.fillStyle = '#1d232b';
        g.fillText(label, lx + 16, p.top - 7); lx += g.measureText(label).width + 40;
      }
    }
    // where the method changed on the live call
    g.setLineDash([4, 4]); g.strokeStyle = '#4a5563'; g.lineWidth = 1;
    for (const q of pts) {
      if (!q.changed || q.t < tEnd - span) continue;
      g.beginPath(); g.moveTo(x(q.t), gap); g.lineTo(x(q.t), H - 12); g.stroke();
      g.fillStyle = '#1d232b'; g.fillText(`→ ${q.method}`, x(q.t) + 4, gap + 12);
    }
    g.setLineDash([]);
    g.fillStyle = '#4a5563'; g.fillText(`last ${Math.round(span)} s`, W - right - 52, H - 4);
  }

  async function init() {
    try {
      const config = plcDemo.config = await plcDemo.request('GET', '/config');
      for (const m of config.methods) $('method').add(new Option(m, m, false, m === config.defaultMethod));
      $('jitter').value = config.defaultJitterMs;
      const [model, args = ''] = config.defaultLoss.split(':');  // e.g. gilbert:0.1,3
      const [rate, burst] = args.split(',').map(Number);
      $('lossModel').value = model;
      if (rate >= 0) $('lossPercent').value = Math.round(rate * 1000) / 10;
      if (burst >= 1) $('burst').value = burst;
    } catch (e) { showError(e); }
    $('connect').addEventListener('click', connect);
    $('hangup').addEventListener('click', hangup);
    $('method').addEventListener('change', () => apply(['method']));
    for (const id of ['lossModel', 'lossPercent', 'burst', 'jitter', 'seed']) {
      $(id).addEventListener('change', () => apply(['loss', 'jitter_ms', 'seed']));
    }
    draw([]);
    document.body.dataset.ready = 'true';
  }
  init();
})();
