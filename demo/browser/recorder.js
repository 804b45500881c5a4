// AudioWorklet processor of `plc demo serve`'s page: records the first channel of its input
// (the server's echo) until `samples` are collected, then posts them as one Float32Array.
// A render quantum without input (the stream not flowing yet) is recorded as silence, so the
// recording keeps wall-clock time.
class EchoRecorder extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.buffer = new Float32Array(options.processorOptions.samples);
    this.filled = 0;
  }

  process(inputs) {
    if (this.filled >= this.buffer.length) return false;
    const channel = inputs[0] && inputs[0][0];
    const n = Math.min(128, this.buffer.length - this.filled);
    if (channel) this.buffer.set(channel.subarray(0, n), this.filled);
    this.filled += n;
    if (this.filled >= this.buffer.length) {
      this.port.postMessage(this.buffer, [this.buffer.buffer]);
      return false;
    }
    return true;
  }
}

registerProcessor('echo-recorder', EchoRecorder);
