/**
 * A minimal QMP (QEMU Machine Protocol) client: connect, negotiate capabilities, run commands.
 * The daemon uses it to know a VM is up (QEMU answers QMP once its devices are realised) and
 * to ask it to quit.
 */
import { socketPeer } from '../common/unix-socket.js';
import net from 'node:net';
import { RuntimeError } from '../common/errors.js';

export class QmpClient {
  private buffer = '';
  private readonly waiting: Array<{ resolve: (v: unknown) => void; reject: (e: Error) => void }> = [];
  private closed: Error | undefined;

  private constructor(private readonly socket: net.Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    const fail = (err?: Error) => {
      this.closed ??= err ?? new RuntimeError('QMP connection closed', 'QMP_CLOSED');
      for (const w of this.waiting.splice(0)) w.reject(this.closed);
    };
    socket.on('error', fail);
    socket.on('close', () => fail());
  }

  /** The pid of the QEMU serving this socket (SO_PEERCRED, in our pid namespace). */
  peerPid(): number | undefined {
    return socketPeer(this.socket)?.pid;
  }

  /** Connect and finish the greeting + qmp_capabilities handshake. */
  static async connect(path: string, timeoutMs: number): Promise<QmpClient> {
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect(path);
      const timer = setTimeout(() => {
        s.destroy();
        reject(new RuntimeError(`no QMP answer on ${path}`, 'QMP_TIMEOUT'));
      }, timeoutMs);
      s.once('connect', () => {
        clearTimeout(timer);
        resolve(s);
      });
      s.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
    const client = new QmpClient(socket);
    try {
      await client.next(timeoutMs); // greeting
      await client.execute('qmp_capabilities', undefined, timeoutMs);
      return client;
    } catch (err) {
      client.close();
      throw err;
    }
  }

  async execute(command: string, args?: Record<string, unknown>, timeoutMs = 10_000): Promise<unknown> {
    this.socket.write(JSON.stringify(args ? { execute: command, arguments: args } : { execute: command }) + '\n');
    for (;;) {
      const msg = (await this.next(timeoutMs)) as { return?: unknown; error?: { desc?: string }; event?: string };
      if (msg.event) continue;
      if (msg.error) throw new RuntimeError(`QEMU refused ${command}: ${msg.error.desc ?? 'error'}`, 'QMP_ERROR');
      return msg.return;
    }
  }

  close(): void {
    this.socket.destroy();
  }

  private readonly messages: unknown[] = [];

  private onData(chunk: string): void {
    this.buffer += chunk;
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, nl).trim();
      this.buffer = this.buffer.slice(nl + 1);
      if (!line) continue;
      let msg: unknown;
      try {
        msg = JSON.parse(line);
      } catch {
        continue;
      }
      const w = this.waiting.shift();
      if (w) w.resolve(msg);
      else this.messages.push(msg);
    }
  }

  private next(timeoutMs: number): Promise<unknown> {
    if (this.messages.length) return Promise.resolve(this.messages.shift());
    if (this.closed) return Promise.reject(this.closed);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = this.waiting.indexOf(entry);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(new RuntimeError('QEMU did not answer on QMP', 'QMP_TIMEOUT'));
      }, timeoutMs);
      const entry = {
        resolve: (v: unknown) => {
          clearTimeout(timer);
          resolve(v);
        },
        reject: (e: Error) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      this.waiting.push(entry);
    });
  }
}
