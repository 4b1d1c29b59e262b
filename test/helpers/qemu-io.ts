/**
 * An interactive qemu-io on one image (an NBD URI): one connection kept open across commands,
 * as a guest keeps its disk, so a test can write, let something happen elsewhere, and write again.
 */
import { spawn, type ChildProcess } from 'node:child_process';

const PROMPT = 'qemu-io> ';

export class QemuIoSession {
  private out = '';
  private readonly child: ChildProcess;
  private readonly exited: Promise<void>;

  constructor(uri: string) {
    this.child = spawn('qemu-io', ['-f', 'raw', uri], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdout!.on('data', (d: Buffer) => (this.out += d.toString()));
    this.child.stderr!.on('data', (d: Buffer) => (this.out += d.toString()));
    this.exited = new Promise((resolve) => this.child.on('exit', () => resolve()));
  }

  /** Waits for the first prompt (the connection is open: the volume is attached). */
  async ready(): Promise<string> {
    return this.until(1);
  }

  /** Runs one command; resolves with what it printed (errors included: qemu-io goes on). */
  async run(command: string): Promise<string> {
    const before = this.prompts();
    const start = this.out.length;
    this.child.stdin!.write(`${command}\n`);
    await this.until(before + 1);
    return this.out.slice(start).replaceAll(PROMPT, '');
  }

  /** Everything printed so far. */
  output(): string {
    return this.out;
  }

  async close(): Promise<void> {
    if (this.child.exitCode === null) {
      this.child.stdin!.end('quit\n');
      const t = setTimeout(() => this.child.kill('SIGKILL'), 30_000);
      await this.exited;
      clearTimeout(t);
    }
  }

  private prompts(): number {
    return this.out.split(PROMPT).length - 1;
  }

  private async until(prompts: number): Promise<string> {
    while (this.prompts() < prompts) {
      if (this.child.exitCode !== null) throw new Error(`qemu-io exited: ${this.out}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    return this.out;
  }
}
