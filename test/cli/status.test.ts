/** `nitride status` against a real KMS and daemon: health, the volume table, --json details. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StatusReport } from '../../src/cli/commands/status.js';
import type { VolumeInfo } from '../../src/api/volumes.js';
import { startHost, type TestHost } from '../helpers/nitride.js';
import { nbdPython } from '../helpers/run.js';

let host: TestHost;
beforeAll(async () => {
  host = await startHost();
});
afterAll(async () => {
  await host?.stop();
});

describe('nitride status', () => {
  it('summarises health, volumes and their attachments for people and for scripts', async () => {
    const created = await host.cli(['volume', 'create', '--json', '--size', '8M', '--name', 'status-vol']);
    expect(created.code, created.stderr).toBe(0);
    const vol = JSON.parse(created.stdout) as VolumeInfo;

    const human = await host.cli(['status']);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toMatch(/^health:\s+ok$/m);
    expect(human.stdout).toMatch(/^vpc:\s+up, underlay 127\.0\.0\.1:0 \(MTU 1500: VPCs up to 1426\)$/m);
    expect(human.stdout).toMatch(/^VOLUME\s+NAME\s+TYPE\s+SIZE\s+STATE\s+ATTACHED\s+IOPS\s+MIB\/S\s+THROTTLED S \(IOPS\/TP\)$/m);
    expect(human.stdout).toMatch(new RegExp(`^${vol.id}\\s+status-vol\\s+ebs\\s+8 MiB\\s+available\\s+-\\s+-\\s+-\\s+-$`, 'm'));

    // While a client holds the volume, status shows who (python's pid) and the connection.
    const seen = await nbdPython<{ pid: number; out: string }>(`
import nbd, json, os, subprocess
h = nbd.NBD()
h.connect_uri(${JSON.stringify(vol.uri)})
out = subprocess.run([${JSON.stringify(process.execPath)}, ${JSON.stringify((await import('../helpers/nitride.js')).CLI)}, 'status', '--json'],
                     capture_output=True, text=True, env={**os.environ, 'NITRIDE_SOCKET': ${JSON.stringify(host.daemon.socket)}}).stdout
h.shutdown()
print(json.dumps({'pid': os.getpid(), 'out': out}))
`);
    const report = JSON.parse(seen.out) as StatusReport;
    expect(report.health).toBe('ok');
    expect(report.problems).toEqual([]);
    expect(report.volumes).toMatchObject({ total: 1, inUse: 1, ebs: 1 });
    const detail = report.details.volumes.find((v) => v.id === vol.id)!;
    expect(detail.state).toBe('in-use');
    expect(detail.attachments).toEqual([{ consumer: `pid ${seen.pid}`, connections: 1 }]);
    expect(report.details.enis).toEqual([]);
    expect(report.details.vpcStats).not.toBeNull();
  });
});
