/**
 * File descriptors systemd passes to a service (socket activation, and the fd store handing
 * back what a previous run stored): `LISTEN_PID`, `LISTEN_FDS` (fds 3…), `LISTEN_FDNAMES`
 * (colon-separated names, `FileDescriptorName=` / `FDNAME=`). Read once: the variables are
 * removed so the processes we spawn (ip, tc) do not think the fds are theirs.
 */
export const SD_LISTEN_FDS_START = 3;

let taken: Map<string, number[]> | undefined;

/** Name → fds passed to this process (unnamed ones are `unknown`); empty when none. */
export function takeListenFds(env: NodeJS.ProcessEnv = process.env): Map<string, number[]> {
  if (taken) return taken;
  taken = new Map();
  const count = Number(env.LISTEN_FDS);
  if (Number(env.LISTEN_PID) === process.pid && Number.isInteger(count) && count > 0) {
    const names = (env.LISTEN_FDNAMES ?? '').split(':');
    for (let i = 0; i < count; i++) {
      const name = names[i] || 'unknown';
      taken.set(name, [...(taken.get(name) ?? []), SD_LISTEN_FDS_START + i]);
    }
  }
  delete env.LISTEN_PID;
  delete env.LISTEN_FDS;
  delete env.LISTEN_FDNAMES;
  return taken;
}
