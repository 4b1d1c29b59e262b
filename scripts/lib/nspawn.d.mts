// Types of nspawn.mjs, for the TypeScript tests.
export interface ExecResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface BootedSystemd {
  name: string;
  /** PID (host view) of the container's systemd. */
  pid: number;
  /** Run a command inside the container (all namespaces); never rejects for an exit code. */
  exec(args: string[]): Promise<ExecResult>;
  /** Like exec, but rejects unless it exits 0; resolves with stdout. */
  execOk(args: string[]): Promise<string>;
  /** A path inside the container, as the host sees it (sockets for host-side clients). */
  hostPath(inside: string): string;
  /** `systemctl show UNIT -pP…` as an object (property → value). */
  show(unit: string, props: string[]): Promise<Record<string, string>>;
  /** Power off and clean up. */
  shutdown(): Promise<void>;
  output(): string;
}

export const canBootSystemd: boolean;
export function systemdTree(packages?: string[]): Promise<string>;
/** Boot systemd with `units` (host file → name in /etc/systemd/system) bound in. */
/** Where the booted system sees this checkout for its units (`nitride install-units --root`). */
export const UNIT_ROOT: string;
export function bootSystemd(units: Record<string, string>, options?: { packages?: string[]; bindRo?: string[] }): Promise<BootedSystemd>;
