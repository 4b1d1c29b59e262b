import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_CONTROL_SOCKET } from '../../src/api/control.js';
import { loadDaemonConfig } from '../../src/daemon/config.js';
import { tempDir } from '../helpers/nitride.js';

let cleanup = (): void => {};
afterEach(() => cleanup());
function configFile(text: string): string {
  const t = tempDir();
  cleanup = t.cleanup;
  const file = path.join(t.dir, 'nitride.toml');
  writeFileSync(file, text);
  return file;
}

describe('loadDaemonConfig', () => {
  it('uses defaults when there is no file (the default file is optional)', async () => {
    const c = await loadDaemonConfig({ config: undefined }, {});
    expect(c.controlSocket).toBe(DEFAULT_CONTROL_SOCKET);
    expect(c.logLevel).toBe('info');
  });

  it('applies precedence flags > env > file > defaults', async () => {
    const file = configFile('state_dir = "/from/file"\ncontrol_socket = "/file.sock"\nlog_level = "warn"\n');
    const fromFile = await loadDaemonConfig({ config: file }, {});
    expect(fromFile).toMatchObject({ stateDir: '/from/file', controlSocket: '/file.sock', logLevel: 'warn', configFile: file });
    const fromEnv = await loadDaemonConfig({ config: file }, { NITRIDE_STATE_DIR: '/from/env', NITRIDE_LOG_LEVEL: 'debug' });
    expect(fromEnv).toMatchObject({ stateDir: '/from/env', controlSocket: '/file.sock', logLevel: 'debug' });
    const fromFlags = await loadDaemonConfig({ config: file, stateDir: '/from/flag', logLevel: 'error' }, { NITRIDE_STATE_DIR: '/from/env' });
    expect(fromFlags).toMatchObject({ stateDir: '/from/flag', logLevel: 'error' });
  });

  it('takes a network KMS from flags or the file, endpoint and public key together', async () => {
    const key = Buffer.alloc(32, 9).toString('base64');
    expect(await loadDaemonConfig({ config: configFile(`kms_endpoint = "10.0.0.5:7700"\nkms_public_key = "${key}"\n`) }, {})).toMatchObject({ kmsEndpoint: '10.0.0.5:7700', kmsPublicKey: key });
    expect(await loadDaemonConfig({ kmsEndpoint: 'kms.example:7700', kmsPublicKey: key }, {})).toMatchObject({ kmsEndpoint: 'kms.example:7700' });
    expect((await loadDaemonConfig({}, {})).kmsEndpoint).toBeUndefined();
    await expect(loadDaemonConfig({ kmsEndpoint: '10.0.0.5:7700' }, {})).rejects.toThrow(/--kms-endpoint and --kms-public-key go together/);
    await expect(loadDaemonConfig({ kmsEndpoint: '10.0.0.5:99999', kmsPublicKey: key }, {})).rejects.toThrow(/--kms-endpoint/);
    await expect(loadDaemonConfig({ kmsEndpoint: '10.0.0.5:7700', kmsPublicKey: 'nope' }, {})).rejects.toThrow(/--kms-public-key must be 32 bytes/);
  });

  it('takes fleet mode (etcd endpoints and TLS files) from flags or the file; none is standalone', async () => {
    const tls = { fleetCa: '/etc/nitride/etcd-ca.pem', fleetCert: '/etc/nitride/host.pem', fleetKey: '/etc/nitride/host-key.pem' };
    const fleet = { endpoints: ['https://10.0.0.5:2379', 'https://[2001:db8::1]:2379'], ca: tls.fleetCa, cert: tls.fleetCert, key: tls.fleetKey };
    expect((await loadDaemonConfig({}, {})).fleet).toBeUndefined();
    expect((await loadDaemonConfig({ fleetEndpoints: fleet.endpoints, ...tls }, {})).fleet).toEqual(fleet);
    const toml = `fleet_endpoints = ["https://10.0.0.5:2379", "https://[2001:db8::1]:2379"]\nfleet_ca = "${tls.fleetCa}"\nfleet_cert = "${tls.fleetCert}"\nfleet_key = "${tls.fleetKey}"\n`;
    expect((await loadDaemonConfig({ config: configFile(toml) }, {})).fleet).toEqual(fleet);
    // Flags first.
    expect((await loadDaemonConfig({ config: configFile(toml), fleetEndpoints: ['https://10.9.9.9:2379'] }, {})).fleet?.endpoints).toEqual(['https://10.9.9.9:2379']);
    await expect(loadDaemonConfig({ fleetEndpoints: ['http://10.0.0.5:2379'], ...tls }, {})).rejects.toThrow(/'http:\/\/10.0.0.5:2379' is not https:\/\/HOST:PORT/);
    await expect(loadDaemonConfig({ fleetEndpoints: ['https://10.0.0.5'], ...tls }, {})).rejects.toThrow(/--fleet-endpoints/);
    await expect(loadDaemonConfig({ fleetEndpoints: [], ...tls }, {})).rejects.toThrow(/at least one URL/);
    await expect(loadDaemonConfig({ fleetEndpoints: fleet.endpoints, fleetCa: tls.fleetCa, fleetCert: tls.fleetCert }, {})).rejects.toThrow(/needs --fleet-key/);
    await expect(loadDaemonConfig({ fleetEndpoints: fleet.endpoints, ...tls, fleetCa: 'ca.pem' }, {})).rejects.toThrow(/--fleet-ca must be an absolute path/);
    await expect(loadDaemonConfig({ fleetCert: tls.fleetCert }, {})).rejects.toThrow(/need --fleet-endpoints/);
    await expect(loadDaemonConfig({ config: configFile('fleet_endpoints = "https://10.0.0.5:2379"\n') }, {})).rejects.toThrow(/fleet_endpoints/);
  });

  it('rejects unknown keys, bad values and bad TOML with the file name', async () => {
    await expect(loadDaemonConfig({ config: configFile('state_dri = "/x"\n') }, {})).rejects.toThrow(/unknown field\(s\) 'state_dri'/);
    await expect(loadDaemonConfig({ config: configFile('log_level = "loud"\n') }, {})).rejects.toThrow(/log_level/);
    await expect(loadDaemonConfig({ config: configFile('state_dir = \n') }, {})).rejects.toThrow(/not valid TOML/);
  });

  it('nbd_data_plane: native by default, js from the file, a flag over the file, bad values refused', async () => {
    expect((await loadDaemonConfig({ config: undefined }, {})).nbdDataPlane).toBe('native');
    const file = configFile('nbd_data_plane = "js"\n');
    expect((await loadDaemonConfig({ config: file }, {})).nbdDataPlane).toBe('js');
    expect((await loadDaemonConfig({ config: file, nbdDataPlane: 'native' }, {})).nbdDataPlane).toBe('native');
    await expect(loadDaemonConfig({ config: configFile('nbd_data_plane = "fast"\n') }, {})).rejects.toThrow(/nbd_data_plane/);
  });

  it('ceph: host id from the flag, the file or the hostname; a bad one refused', async () => {
    expect((await loadDaemonConfig({ cephConf: '/etc/ceph/ceph.conf', hostId: 'rack1-h7' }, {})).ceph).toMatchObject({ hostId: 'rack1-h7', pool: 'rbd', id: 'admin' });
    expect((await loadDaemonConfig({ config: configFile('ceph_conf = "/c.conf"\nhost_id = "h2"\n') }, {})).ceph?.hostId).toBe('h2');
    expect((await loadDaemonConfig({ cephConf: '/c.conf' }, {})).ceph?.hostId).toMatch(/^[A-Za-z0-9][A-Za-z0-9._-]*$/);
    await expect(loadDaemonConfig({ cephConf: '/c.conf', hostId: 'bad host' }, {})).rejects.toThrow(/--host-id 'bad host' must be/);
  });

  it('fleet with ceph: the rbd lock holder name is the certificate CN; another --host-id is refused', async () => {
    const t = tempDir();
    const [cert, key] = [path.join(t.dir, 'h.pem'), path.join(t.dir, 'h-key.pem')];
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=rack2-h9', '-days', '1', '-keyout', key, '-out', cert], { stdio: 'ignore' });
    const flags = { fleetEndpoints: ['https://127.0.0.1:2379'], fleetCa: cert, fleetCert: cert, fleetKey: key, cephConf: '/c.conf' };
    try {
      expect((await loadDaemonConfig(flags, {})).ceph?.hostId).toBe('rack2-h9');
      expect((await loadDaemonConfig({ ...flags, hostId: 'rack2-h9' }, {})).ceph?.hostId).toBe('rack2-h9');
      await expect(loadDaemonConfig({ ...flags, hostId: 'other' }, {})).rejects.toThrow(/--host-id 'other' differs from the fleet certificate's CN 'rack2-h9'/);
      await expect(loadDaemonConfig({ ...flags, fleetCert: path.join(t.dir, 'missing.pem') }, {})).rejects.toThrow(/cannot read --fleet-cert/);
    } finally {
      t.cleanup();
    }
  });

  it('vm_uid_range: the default, the file, a flag over the file; nobody and root refused', async () => {
    expect((await loadDaemonConfig({ config: undefined }, {})).vmUidRange).toBe('1879048192-1879113727');
    const file = configFile('vm_uid_range = "300000-300099"\n');
    expect((await loadDaemonConfig({ config: file }, {})).vmUidRange).toBe('300000-300099');
    expect((await loadDaemonConfig({ config: file, vmUidRange: '400000-400009' }, {})).vmUidRange).toBe('400000-400009');
    await expect(loadDaemonConfig({ vmUidRange: '60000-70000' }, {})).rejects.toThrow(/--vm-uid-range 60000-70000 includes nobody/);
    await expect(loadDaemonConfig({ vmUidRange: '0-9' }, {})).rejects.toThrow(/--vm-uid-range must be FIRST-LAST/);
  });

  it('vm_console_max/keep: defaults 1 MiB × 3, the file, a flag over the file; out of range refused', async () => {
    expect((await loadDaemonConfig({ config: undefined }, {})).vmConsole).toEqual({ maxBytes: 1 << 20, keep: 3 });
    const file = configFile('vm_console_max = "64K"\nvm_console_keep = 5\n');
    expect((await loadDaemonConfig({ config: file }, {})).vmConsole).toEqual({ maxBytes: 64 << 10, keep: 5 });
    expect((await loadDaemonConfig({ config: file, vmConsoleMax: '8K', vmConsoleKeep: 0 }, {})).vmConsole).toEqual({ maxBytes: 8 << 10, keep: 0 });
    await expect(loadDaemonConfig({ vmConsoleMax: '1K' }, {})).rejects.toThrow(/--vm-console-max must be from 4K to 1G/);
    await expect(loadDaemonConfig({ vmConsoleKeep: NaN }, {})).rejects.toThrow(/--vm-console-keep must be a whole number/);
  });

  it('ephemeral_handover_file: off by default (nothing derived from an ephemeral key in a file), on from the file or the flag', async () => {
    expect((await loadDaemonConfig({ config: undefined }, {})).ephemeralHandoverFile).toBe(false);
    expect((await loadDaemonConfig({ config: configFile('ephemeral_handover_file = true\n') }, {})).ephemeralHandoverFile).toBe(true);
    expect((await loadDaemonConfig({ ephemeralHandoverFile: true }, {})).ephemeralHandoverFile).toBe(true);
    await expect(loadDaemonConfig({ config: configFile('ephemeral_handover_file = "yes"\n') }, {})).rejects.toThrow(/ephemeral_handover_file/);
  });

  it('rejects a missing explicit file and a bad env level', async () => {
    await expect(loadDaemonConfig({ config: '/nonexistent/nitride.toml' }, {})).rejects.toThrow(/cannot read config file \/nonexistent\/nitride.toml/);
    await expect(loadDaemonConfig({}, { NITRIDE_LOG_LEVEL: 'loud' })).rejects.toThrow(/NITRIDE_LOG_LEVEL/);
    // The cipher implementation switches take "openssl" or nothing: a typo would run the other code.
    await expect(loadDaemonConfig({}, { NITRIDE_GCM_IMPL: 'opensll' })).rejects.toThrow(/^NITRIDE_GCM_IMPL must be unset or "openssl"$/);
    await expect(loadDaemonConfig({}, { NITRIDE_XTS_IMPL: 'vaes' })).rejects.toThrow(/^NITRIDE_XTS_IMPL must be unset or "openssl"$/);
    expect((await loadDaemonConfig({}, { NITRIDE_GCM_IMPL: 'openssl', NITRIDE_XTS_IMPL: '' })).logLevel).toBe('info');
  });
});
