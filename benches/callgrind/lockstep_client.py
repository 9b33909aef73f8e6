#!/usr/bin/env python3
"""Keep-alive client for per_request.sh, in lockstep rounds: C connections, N requests
in all (GET /), N/C rounds. In each round the server is stopped (SIGSTOP) while one
request goes out on every connection, then continued: its loop sees all C requests in
one epoll_wait, so the batching (and the per-request figures) do not depend on timing.
Usage: lockstep_client.py PORT C N SERVER_PID"""
import os, select, signal, socket, sys

port, conns, total, pid = (int(x) for x in sys.argv[1:5])
REQ = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
assert total % conns == 0
socks = []
for _ in range(conns):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    socks.append(s)
ep = select.epoll()
byfd = {s.fileno(): s for s in socks}
for s in socks:
    ep.register(s.fileno(), select.EPOLLIN)
done = 0
for _ in range(total // conns):
    os.kill(pid, signal.SIGSTOP)
    for s in socks:
        s.sendall(REQ)
    os.kill(pid, signal.SIGCONT)
    bufs = {fd: b"" for fd in byfd}
    waiting = set(byfd)
    while waiting:
        for fd, _ in ep.poll(10):
            data = byfd[fd].recv(65536)
            if not data:
                sys.exit("server closed a connection")
            buf = bufs[fd] + data
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                head = buf[:end].lower()
                i = head.find(b"content-length:")
                length = int(head[i + 15:].split(b"\r\n")[0]) if i >= 0 else 0
                if len(buf) >= end + 4 + length:
                    assert len(buf) == end + 4 + length
                    waiting.discard(fd)
                    done += 1
            bufs[fd] = buf
for s in socks:
    s.close()
print(f"{done} answers over {conns} connections")
