/**
 * A probe the security-group tests run in guest namespaces (with the host's python3).
 * Security-group probes: `tcpserve ADDR PORT` and `udpserve ADDR PORT` echo; `tcpconnect ADDR
 * PORT T` and `udpask ADDR PORT T [SPORT]` print ok, timeout or refused; `session ADDR PORT`
 * keeps one connection and answers each stdin line with ok or timeout.
 */
export const SG_PROBE_PY = `
import socket, sys, threading
cmd, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
def echo(c):
    while True:
        b = c.recv(4096)
        if not b: break
        c.sendall(b)
if cmd == 'tcpserve':
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((addr, port)); s.listen(64)
    while True:
        c, _ = s.accept(); threading.Thread(target=echo, args=(c,), daemon=True).start()
elif cmd == 'udpserve':
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((addr, port))
    while True:
        b, src = s.recvfrom(4096); s.sendto(b, src)
elif cmd == 'tcpconnect':
    try:
        socket.create_connection((addr, port), timeout=float(sys.argv[4])).close(); print('ok')
    except socket.timeout: print('timeout')
    except ConnectionRefusedError: print('refused')
elif cmd == 'udpask':
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(float(sys.argv[4]))
    if len(sys.argv) > 5: s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('', int(sys.argv[5])))
    s.connect((addr, port))
    try:
        s.send(b'x'); s.recv(64); print('ok')
    except socket.timeout: print('timeout')
    except ConnectionRefusedError: print('refused')
elif cmd == 'session':
    c = socket.create_connection((addr, port), timeout=10); print('connected', flush=True)
    c.settimeout(3)
    for line in sys.stdin:
        try:
            c.sendall(b'x'); print('ok' if c.recv(64) else 'closed', flush=True)
        except socket.timeout: print('timeout', flush=True)
        except OSError: print('error', flush=True)
`;
