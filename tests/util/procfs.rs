//! What `/proc` says about a server process: its fds, its children, the TCP sockets it
//! holds.

/// Number of open fds of a process.
pub fn count_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Pids whose parent is `pid`, with their state letter (`Z` for a zombie).
pub fn children_of(pid: u32) -> Vec<(u32, char)> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid = fields.next().and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            if let Ok(child) = entry.file_name().to_string_lossy().parse() {
                children.push((child, state));
            }
        }
    }
    children
}

/// Children of `pid` that have not exited (zombies left out).
pub fn live_children(pid: u32) -> std::collections::HashSet<u32> {
    children_of(pid)
        .into_iter()
        .filter(|&(_, state)| state != 'Z')
        .map(|(child, _)| child)
        .collect()
}

/// True if process `pid` holds a socket with one of these inodes.
pub fn holds_socket(pid: u32, inodes: &[String]) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|target| {
            let target = target.to_string_lossy();
            inodes
                .iter()
                .any(|inode| target == format!("socket:[{inode}]"))
        })
    })
}

/// Inodes of the TCP sockets whose peer is at `port`, from `/proc/PID/net/tcp` (the
/// namespace's whole table: pair it with [`holds_socket`]).
pub fn sockets_to(pid: u32, port: u16) -> Vec<String> {
    let remote = format!(":{port:04X}");
    tcp_inodes(pid, |fields| fields[2].ends_with(&remote))
}

/// Inodes of the TCP sockets listening on `port`, from `/proc/PID/net/tcp`.
pub fn listening_on(pid: u32, port: u16) -> Vec<String> {
    let local = format!(":{port:04X}");
    tcp_inodes(pid, |fields| {
        fields[1].ends_with(&local) && fields[3] == "0A"
    })
}

/// Inodes of the rows of `/proc/PID/net/tcp` whose fields `keep` accepts.
fn tcp_inodes(pid: u32, keep: impl Fn(&[&str]) -> bool) -> Vec<String> {
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
    table
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(|fields| fields.len() > 9 && keep(fields))
        .map(|fields| fields[9].to_string())
        .collect()
}
