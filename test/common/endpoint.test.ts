import { describe, expect, it } from 'vitest';
import { UsageError } from '../../src/common/errors.js';
import { endpointOrNull, formatEndpoint, parseEndpoint } from '../../src/common/endpoint.js';

describe('HOST:PORT endpoints', () => {
  it('parses IPv4, bracketed IPv6 and names; the port is 0-65535', () => {
    expect(endpointOrNull('127.0.0.1:10809')).toEqual({ host: '127.0.0.1', port: 10809 });
    expect(endpointOrNull('[::1]:0')).toEqual({ host: '::1', port: 0 });
    expect(endpointOrNull('[::ffff:192.0.2.1]:65535')).toEqual({ host: '::ffff:192.0.2.1', port: 65535 });
    expect(endpointOrNull('nbd.example-host.test:10809')).toEqual({ host: 'nbd.example-host.test', port: 10809 });
    for (const bad of ['127.0.0.1:65536', '127.0.0.1', ':80', '::1:80', '[::1]', '[nope]:80', '[127.0.0.1]:80', 'a b:80', 'host:port', '127.0.0.1:123456', '']) {
      expect(endpointOrNull(bad), bad).toBeNull();
    }
  });

  it('numeric: the host must be an IP address', () => {
    expect(endpointOrNull('0.0.0.0:4789', { numeric: true })).toEqual({ host: '0.0.0.0', port: 4789 });
    expect(endpointOrNull('[::]:4789', { numeric: true })).toEqual({ host: '::', port: 4789 });
    for (const bad of ['example.com:4789', '1.2.3:4789', '999.0.0.1:4789', 'localhost:1']) expect(endpointOrNull(bad, { numeric: true }), bad).toBeNull();
  });

  it('parseEndpoint names the option and the expected form in one line', () => {
    expect(() => parseEndpoint('example.com:4789', '--vpc-listen', { numeric: true })).toThrow(new UsageError("--vpc-listen must be NUMERIC-HOST:PORT, got 'example.com:4789'"));
    expect(() => parseEndpoint('x', '--nbd-listen')).toThrow("--nbd-listen must be HOST:PORT, got 'x'");
    expect(() => parseEndpoint('x', '--metrics-listen', { numeric: true, shape: 'LOOPBACK-IP:PORT' })).toThrow("--metrics-listen must be LOOPBACK-IP:PORT, got 'x'");
    expect(() => parseEndpoint('x', 'endpoint')).toThrow(UsageError);
  });

  it('formats with brackets around IPv6, and round-trips', () => {
    for (const text of ['127.0.0.1:10809', '[::1]:9464', '[fe80::1]:1', 'host.test:80']) expect(formatEndpoint(parseEndpoint(text, 'x'))).toBe(text);
  });
});
