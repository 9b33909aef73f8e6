//! Whatever answers on Redis's port is a peer like any other: what it sends is bounded
//! in size and in time. A fake Redis (a thread of this test, on a loopback port) plays
//! each fault once: a pub/sub message that claims a terabyte and keeps coming, a message
//! that stops half-way and never finishes, a start-up answer sent one byte at a time;
//! a link that goes silent; and two things that are no fault: messages whose every read
//! ends inside the next one, and an answer the connection closes right after.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use mixserve::sync::{Broadcast, Channel, Redis};

/// Far past any bound the crate sets, far below what would hurt the machine.
const FLOOD_CAP: usize = 1 << 30;
/// What the flood may have sent before the client hangs up: the largest reply the crate
/// accepts (16 MiB and a little) plus what the two sockets' buffers hold.
const FLOOD_ALLOWED: usize = 64 << 20;
const LONG: Duration = Duration::from_secs(30);

/// One command of a client (RESP arrays of bulk strings); `None` at end of stream.
fn read_command(reader: &mut impl BufRead) -> Option<Vec<String>> {
    let mut line = String::new();
    reader.read_line(&mut line).ok().filter(|&n| n > 0)?;
    let count: usize = line.trim().strip_prefix('*')?.parse().ok()?;
    let mut args = Vec::with_capacity(count.min(16));
    for _ in 0..count {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let len: usize = line.trim().strip_prefix('$')?.parse().ok()?;
        let mut arg = vec![0; len + 2];
        reader.read_exact(&mut arg).ok()?;
        arg.truncate(len);
        args.push(String::from_utf8_lossy(&arg).into_owned());
    }
    Some(args)
}

/// What the fake does once a connection subscribed, the first time only.
#[derive(Clone, Copy)]
enum Fault {
    /// A message whose payload claims 1 TiB, then payload bytes until the client hangs
    /// up (or `FLOOD_CAP`): reports how many bytes went out.
    Flood,
    /// The start of a message, then nothing: reports when the client hung up.
    Stall,
    /// For `TRICKLE_ROUNDS` rounds `TRICKLE_EVERY` apart, the rest of one message and
    /// the start of the next, so that every read ends inside a message while messages
    /// keep completing: reports 0 if the client stayed, 1 if it subscribed again.
    Trickle,
    /// Nothing more, not even an answer to a `PING`, with the connection left open (a
    /// link that died without a word): reports 1 when the client subscribed again.
    Silent,
    /// Small, valid messages without end (until the client hangs up or `LONG`):
    /// reports 0 when it starts.
    Chatter,
    /// Answers an `LPUSH` and closes the connection in the same breath (a Redis going
    /// away just after it served the push): reports 0 then.
    CloseAfterPush,
}

const TRICKLE_ROUNDS: usize = 35;
const TRICKLE_EVERY: Duration = Duration::from_millis(100);

/// A fake Redis on a loopback port: answers `PING` and `SUBSCRIBE` like Redis (and
/// anything else with `+OK`), and plays `fault` once, on the first subscription to a
/// channel. The report (bytes sent, or 0) arrives on the receiver.
fn fake_redis(fault: Fault) -> (String, mpsc::Receiver<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}", listener.local_addr().unwrap());
    let (report, reports) = mpsc::channel();
    let played = Arc::new(AtomicBool::new(false));
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (report, played) = (report.clone(), Arc::clone(&played));
            thread::spawn(move || serve(stream, fault, &played, &report));
        }
    });
    (url, reports)
}

/// Serves one connection, playing `fault` after the first subscription of them all.
fn serve(stream: TcpStream, fault: Fault, played: &AtomicBool, report: &mpsc::Sender<usize>) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    while let Some(command) = read_command(&mut reader) {
        let verb = command.first().map(|v| v.to_ascii_uppercase());
        let channels = &command[1.min(command.len())..];
        let answer = match verb.as_deref() {
            Some("PING") => "+PONG\r\n".to_string(),
            Some("SUBSCRIBE") => channels
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    format!(
                        "*3\r\n$9\r\nsubscribe\r\n${}\r\n{c}\r\n:{}\r\n",
                        c.len(),
                        i + 1
                    )
                })
                .collect(),
            Some("LPUSH") if matches!(fault, Fault::CloseAfterPush) => {
                let _ = writer.write_all(b":1\r\n");
                let _ = report.send(0);
                return;
            }
            _ => "+OK\r\n".to_string(),
        };
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
        let Some(channel) = channels.first() else {
            continue;
        };
        if verb.as_deref() != Some("SUBSCRIBE") {
            continue;
        }
        if played.swap(true, Ordering::SeqCst) {
            if matches!(fault, Fault::Trickle | Fault::Silent) {
                let _ = report.send(1); // the client gave the connection up
            }
            continue;
        }
        let head = format!("*3\r\n$7\r\nmessage\r\n${}\r\n{channel}\r\n", channel.len());
        match fault {
            Fault::Flood => {
                let _ = writer.write_all(format!("{head}$1099511627776\r\n").as_bytes());
                let chunk = vec![b'x'; 64 * 1024];
                let mut sent = 0;
                while sent < FLOOD_CAP && writer.write_all(&chunk).is_ok() {
                    sent += chunk.len();
                }
                let _ = report.send(sent);
            }
            Fault::Trickle => {
                let message = format!("{head}$4\r\nxxxx\r\n");
                let (start, rest) = message.split_at(message.len() / 2);
                let _ = writer.write_all(start.as_bytes());
                for _ in 0..TRICKLE_ROUNDS {
                    thread::sleep(TRICKLE_EVERY);
                    let _ = writer.write_all(format!("{rest}{start}").as_bytes());
                }
                let _ = writer.write_all(rest.as_bytes());
                let _ = report.send(0);
                // Keeps the connection (and reads on) as the client holds it.
                let mut rest = Vec::new();
                let _ = reader.read_to_end(&mut rest);
            }
            Fault::Chatter => {
                let message = format!("{head}$4\r\nxxxx\r\n");
                let burst = message.repeat(64 * 1024 / message.len());
                let _ = report.send(0);
                let end = Instant::now() + LONG;
                while Instant::now() < end && writer.write_all(burst.as_bytes()).is_ok() {}
            }
            Fault::Silent => {
                let mut rest = Vec::new();
                let _ = reader.read_to_end(&mut rest);
            }
            Fault::CloseAfterPush => continue,
            Fault::Stall => {
                let _ = writer.write_all(format!("{head}$5\r\nhel").as_bytes());
                let mut rest = Vec::new();
                let _ = reader.read_to_end(&mut rest);
                let _ = report.send(0);
            }
        }
        return;
    }
}

/// A waiter on a broadcast of `redis`, in a thread of its own (it may never return).
fn wait_on(redis: &Redis) {
    let news: Broadcast<String> = redis.broadcast("news");
    thread::spawn(move || news.wait_timeout(LONG));
}

#[test]
fn a_reply_that_never_ends_is_cut_off_at_the_bound() {
    let (url, reports) = fake_redis(Fault::Flood);
    let redis = Redis::connect(&url).unwrap();
    wait_on(&redis);
    let sent = reports
        .recv_timeout(LONG)
        .expect("the flood never ended: the client kept reading");
    assert!(
        sent < FLOOD_ALLOWED,
        "the client read {sent} bytes of one reply before hanging up"
    );
}

#[test]
fn a_reply_that_stops_half_way_is_given_up_after_the_timeout() {
    let (url, reports) = fake_redis(Fault::Stall);
    let redis = Redis::builder(&url)
        .timeout(Duration::from_millis(300))
        .connect()
        .unwrap();
    wait_on(&redis);
    reports
        .recv_timeout(LONG)
        .expect("the subscriber connection still waits for the rest of a reply");
}

/// The patience for a reply runs from the start of the value now arriving, not from the
/// first of a stream of values that each complete; and a subscriber that keeps
/// receiving is not asked for a `PING` (its answer would queue behind the messages).
#[test]
fn messages_that_keep_completing_are_not_a_stuck_reply() {
    let (url, reports) = fake_redis(Fault::Trickle);
    // Five times the trickle's gap between messages; a PING would be due after 2.5 s of
    // the trickle's 3.5 s.
    let redis = Redis::builder(&url)
        .timeout(Duration::from_millis(500))
        .connect()
        .unwrap();
    wait_on(&redis);
    let report = reports.recv_timeout(LONG).expect("the trickle ended");
    assert_eq!(
        report, 0,
        "the client gave up a connection that kept delivering"
    );
}

/// A subscriber owes nothing while no message comes; asked for a `PING` now and then,
/// it notices a link that died without a word and subscribes again elsewhere.
#[test]
fn a_subscriber_link_that_went_silent_is_noticed() {
    let (url, reports) = fake_redis(Fault::Silent);
    let redis = Redis::builder(&url)
        .timeout(Duration::from_millis(200))
        .connect()
        .unwrap();
    wait_on(&redis);
    let report = reports
        .recv_timeout(LONG)
        .expect("the client still trusts a subscriber link that answers nothing");
    assert_eq!(report, 1);
}

/// A subscriber flooded with messages still lets the bridge serve other callers: what
/// one readiness event reads is bounded, and the bridge's lock is let go in between.
#[test]
fn a_flood_of_messages_does_not_stall_other_calls() {
    let (url, reports) = fake_redis(Fault::Chatter);
    let redis = Redis::builder(&url)
        .timeout(Duration::from_millis(500))
        .connect()
        .unwrap();
    let news: Broadcast<String> = redis.broadcast("news");
    {
        let news = news.clone();
        thread::spawn(move || news.wait_timeout(LONG));
    }
    reports.recv_timeout(LONG).expect("the flood started");
    let (done, answered) = mpsc::channel();
    thread::spawn(move || {
        let _ = done.send(news.waiting());
    });
    // `waiting` gives up on Redis within its own deadline (a few seconds); only a
    // caller stuck behind the flood takes the flood's whole length.
    answered
        .recv_timeout(LONG / 2)
        .expect("a call waited behind the flood");
}

/// The answer came: that the connection closed right after it does not undo it (the
/// send used to wait out its deadline and report "no answer in time").
#[test]
fn a_reply_followed_by_a_close_is_still_an_answer() {
    let (url, reports) = fake_redis(Fault::CloseAfterPush);
    let redis = Redis::builder(&url)
        .timeout(Duration::from_millis(500))
        .connect()
        .unwrap();
    let jobs: Channel<String> = redis.channel("jobs");
    let sent = jobs.send("x".to_string());
    reports
        .recv_timeout(LONG)
        .expect("the push reached the fake");
    assert!(sent.is_ok(), "{sent:?}");
}

#[test]
fn a_start_up_answer_dripped_byte_by_byte_still_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}", listener.local_addr().unwrap());
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let _ = stream.write_all(b"+");
        // A byte every 50 ms, for at most `LONG`: each read waits less than the timeout.
        let end = Instant::now() + LONG;
        while Instant::now() < end && stream.write_all(b"P").is_ok() {
            thread::sleep(Duration::from_millis(50));
        }
    });
    let (done, result) = mpsc::channel();
    thread::spawn(move || {
        let connected = Redis::builder(&url)
            .timeout(Duration::from_millis(500))
            .connect();
        let _ = done.send(connected.map(|_| ()));
    });
    let result = result
        .recv_timeout(LONG)
        .expect("connect still reads a reply that arrives a byte at a time");
    let error = result.expect_err("a reply that never ends is not an answer");
    assert!(error.to_string().contains("timeout"), "{error}");
}

/// A value whose `try_recv` answer came in the same read as the connection's close is
/// not handed out: its removal from this process's processing list could not be sent,
/// and the reconnect's take-back (`RECOVER`) queues it again, so handed out it would
/// reach a second receiver too. The call fails; no removal is ever sent for it.
#[test]
fn a_value_that_came_with_the_link_s_loss_is_left_for_the_take_back() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}", listener.local_addr().unwrap());
    // (connection number, command) in the order the fake read them.
    let log = Arc::new(std::sync::Mutex::new(Vec::<(usize, String)>::new()));
    let taken = Arc::new(AtomicBool::new(false));
    {
        let (log, taken) = (Arc::clone(&log), Arc::clone(&taken));
        thread::spawn(move || {
            for (number, stream) in listener.incoming().flatten().enumerate() {
                let (log, taken) = (Arc::clone(&log), Arc::clone(&taken));
                thread::spawn(move || {
                    let mut writer = stream.try_clone().unwrap();
                    let mut reader = BufReader::new(stream);
                    while let Some(command) = read_command(&mut reader) {
                        let verb = command[0].to_ascii_uppercase();
                        log.lock().unwrap().push((number, command.join(" ")));
                        let answer: &[u8] = match verb.as_str() {
                            "PING" => b"+PONG\r\n",
                            "SUBSCRIBE" => {
                                let c = &command[1];
                                let confirm = format!(
                                    "*3\r\n$9\r\nsubscribe\r\n${}\r\n{c}\r\n:1\r\n",
                                    c.len()
                                );
                                let _ = writer.write_all(confirm.as_bytes());
                                continue;
                            }
                            "LMOVE" if !taken.swap(true, Ordering::SeqCst) => {
                                // The value, and the connection closes with it.
                                let _ = writer.write_all(b"$4\r\nonce\r\n");
                                return;
                            }
                            "LMOVE" => b"$-1\r\n",
                            "EVAL" | "LREM" => b":0\r\n",
                            _ => b"+OK\r\n",
                        };
                        if writer.write_all(answer).is_err() {
                            return;
                        }
                    }
                });
            }
        });
    }
    let redis = Redis::builder(&url)
        .timeout(Duration::from_millis(500))
        .connect()
        .unwrap();
    let jobs: Channel<String> = redis.channel("jobs");
    let taken = jobs.try_recv();
    assert!(taken.is_err(), "handed out with the loss: {taken:?}");
    let deadline = Instant::now() + LONG;
    loop {
        let log = log.lock().unwrap().clone();
        let lost_on = log
            .iter()
            .find(|(_, c)| c.starts_with("LMOVE"))
            .map(|(n, _)| *n);
        let taken_back = log
            .iter()
            .any(|(n, c)| c.contains("local dead") && Some(*n) != lost_on && lost_on.is_some());
        if taken_back {
            assert!(
                !log.iter().any(|(_, c)| c.starts_with("LREM")),
                "a removal was sent for a value nobody got: {log:#?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no take-back after the reconnect: {log:#?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}
