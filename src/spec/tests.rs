//! Unit tests of [`ModelSpec`], [`ExtraModels`] and (feature `clap`) `ModelArgs`.

use super::*;

#[test]
fn every_name_builds_with_its_defaults() {
    for name in MODEL_NAMES {
        let model = ModelSpec::new(*name).build().unwrap();
        assert_eq!(model.mixin.name(), *name);
    }
}

#[test]
fn options_parse() {
    let spec: ModelSpec = "preforked: workers=3, inner=scheduled, accept=passed"
        .parse()
        .unwrap();
    assert_eq!(spec.workers, Some(3));
    assert_eq!(spec.inner.as_deref(), Some("scheduled"));
    assert!(spec.build().unwrap().stats.is_some());
    let spec: ModelSpec = "scheduled:stack-size=256k,threads=2".parse().unwrap();
    assert_eq!(spec.stack_size, Some(256 * 1024));
    assert!(
        "scheduled:stack-size=1k".parse::<ModelSpec>().is_err(),
        "below the minimum"
    );
    let spec: ModelSpec = "preforked:accept=reuseport".parse().unwrap();
    assert!(spec.build().unwrap().reuse_port);
}

#[test]
fn errors_name_the_problem() {
    let error = "fork".parse::<ModelSpec>().unwrap_err();
    assert!(error.to_string().contains("choose iterative"), "{error}");
    let error = "threading:threads=4".parse::<ModelSpec>().unwrap_err();
    assert!(error.to_string().contains("only prethreaded"), "{error}");
    let error = "preforked:inner=forking".parse::<ModelSpec>().unwrap_err();
    assert!(
        error
            .to_string()
            .contains("iterative, threading, scheduled or prethreaded"),
        "{error}"
    );
    let error = "scheduled:max-workers=lots"
        .parse::<ModelSpec>()
        .unwrap_err();
    assert!(error.to_string().contains("whole number"), "{error}");
    assert!("prethreaded:accept=shared".parse::<ModelSpec>().is_err());
    assert!("iterative:colour=blue".parse::<ModelSpec>().is_err());
}

/// A model of a program's own, for the [`ExtraModels`] tests.
struct Own;

impl crate::MixIn for Own {
    fn name(&self) -> &'static str {
        "own"
    }

    fn process_request(
        &mut self,
        ctx: &std::sync::Arc<crate::Context>,
        conn: crate::Conn,
    ) -> std::io::Result<()> {
        ctx.finish_request(conn);
        Ok(())
    }
}

fn extra() -> ExtraModels {
    ExtraModels::new().with("own", || Own)
}

#[test]
fn inner_options_reach_the_inner_model() {
    let spec: ModelSpec = "preforked:inner=prethreaded,inner-accept=handoff,threads=2"
        .parse()
        .unwrap();
    assert_eq!(spec.inner_accept.as_deref(), Some("handoff"));
    assert_eq!(spec.threads, Some(2));
    let inner = build::inner(&spec, &ExtraModels::new()).unwrap();
    assert_eq!(inner.name(), "prethreaded");
    let pool = build::prethreaded_pool(&spec, ("inner-accept", &spec.inner_accept), None);
    let pool = format!("{:?}", pool.unwrap());
    assert!(pool.contains("accept: Handoff, threads: 2"), "{pool}");
    assert!(spec.build().unwrap().stats.is_some());
    let spec: ModelSpec = "preforked:inner=scheduled,stack-size=128k".parse().unwrap();
    assert_eq!(spec.stack_size, Some(128 * 1024));
    let spec = ModelSpec::new("preforked")
        .inner("prethreaded")
        .inner_accept("locked")
        .heartbeat_timeout(Duration::from_secs(5))
        .max_requests(100);
    assert_eq!(spec.build().unwrap().mixin.name(), "preforked");
}

/// Inside a preforked worker no option sets the prethreaded pool's limit: more threads
/// than its default limit grew the limit instead of failing on a setting nobody can
/// change ("max_threads is 512, must be from 600 to 1024").
#[test]
fn a_prethreaded_pool_with_more_threads_than_its_default_limit_grows_its_limit() {
    for text in [
        "preforked:inner=prethreaded,threads=600",
        "prethreaded:threads=600",
    ] {
        let spec = text.parse::<ModelSpec>();
        assert!(spec.is_ok(), "{text}: {spec:?}");
        let pool = build::prethreaded_pool(&spec.unwrap(), ("accept", &None), None).unwrap();
        let pool = format!("{pool:?}");
        assert!(pool.contains("threads: 600, max_threads: 600"), "{pool}");
    }
    let error = "preforked:inner=prethreaded,threads=2000"
        .parse::<ModelSpec>()
        .unwrap_err()
        .to_string();
    assert!(error.contains("threads is 2000"), "{error}");
    // Fewer threads keep the default limit.
    let spec: ModelSpec = "prethreaded:threads=2".parse().unwrap();
    let pool = format!(
        "{:?}",
        build::prethreaded_pool(&spec, ("accept", &None), None)
    );
    let default = crate::Prethreaded::DEFAULT_MAX_THREADS;
    assert!(pool.contains(&format!("max_threads: {default}")), "{pool}");
}

#[test]
fn inner_options_the_inner_model_does_not_take_are_refused() {
    for (text, option, only) in [
        (
            "preforked:inner-accept=handoff",
            "inner-accept",
            "prethreaded",
        ),
        (
            "preforked:inner=scheduled,inner-accept=locked",
            "inner-accept",
            "prethreaded",
        ),
        (
            "preforked:inner=threading,threads=4",
            "threads",
            "prethreaded",
        ),
        ("preforked:stack-size=128k", "stack-size", "scheduled"),
    ] {
        match text.parse::<ModelSpec>() {
            Err(SpecError::NotForInner {
                option: given,
                hint,
                ..
            }) => {
                assert_eq!(given, option, "{text}");
                assert_eq!(hint, format!(", only with inner={only}"), "{text}");
            }
            other => panic!("{text}: {other:?}"),
        }
    }
    let error = "preforked:inner=prethreaded,inner-accept=shared"
        .parse::<ModelSpec>()
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("bad inner-accept \"shared\": locked or handoff"),
        "{error}"
    );
    let error = "preforked:inner=scheduled,stack-size=1k"
        .parse::<ModelSpec>()
        .unwrap_err();
    assert!(error.to_string().contains("from 32k"), "{error}");
}

#[test]
fn options_of_another_model_are_refused_with_who_takes_them() {
    for (text, option, only) in [
        (
            "prethreaded:inner-accept=handoff",
            "inner-accept",
            "preforked",
        ),
        (
            "threading:heartbeat-timeout=5",
            "heartbeat-timeout",
            "preforked",
        ),
        ("scheduled:max-requests=10", "max-requests", "preforked"),
        (
            "iterative:max-workers=3",
            "max-workers",
            "threading, forking",
        ),
    ] {
        let error = text.parse::<ModelSpec>().unwrap_err();
        assert!(
            matches!(&error, SpecError::NotForModel { option: given, .. } if given == option),
            "{text}: {error:?}"
        );
        assert!(
            error.to_string().contains(&format!("only {only}")),
            "{error}"
        );
    }
}

#[test]
fn an_unknown_option_lists_every_option() {
    let error = "iterative:colour=blue".parse::<ModelSpec>().unwrap_err();
    assert!(
        matches!(&error, SpecError::UnknownOption { option, .. } if option == "colour"),
        "{error:?}"
    );
    let text = error.to_string();
    for option in ["max-workers", "inner-accept", "stack-size", "max-requests"] {
        assert!(text.contains(option), "{text}");
    }
}

#[test]
fn extra_models_are_models_and_inner_models() {
    let extra = extra();
    let model = ModelSpec::new("own").build_with(&extra).unwrap();
    assert_eq!(model.mixin.name(), "own");
    assert!(model.stats.is_none());
    let spec: ModelSpec = ModelSpec::new("preforked").inner("own").workers(2);
    assert_eq!(build::inner(&spec, &extra).unwrap().name(), "own");
    assert_eq!(spec.build_with(&extra).unwrap().mixin.name(), "preforked");
    assert!(spec.build().is_err(), "unknown without the registry");
    assert_eq!(extra.names().collect::<Vec<_>>(), ["own"]);
}

#[test]
fn errors_list_the_extra_models_among_the_choices() {
    let extra = extra();
    let error = ModelSpec::new("mine").build_with(&extra).unwrap_err();
    assert_eq!(
        error.to_string(),
        "unknown model \"mine\": choose iterative, threading, forking, scheduled, \
         preforked, prethreaded or own"
    );
    let error = ModelSpec::new("preforked")
        .inner("forking")
        .build_with(&extra)
        .unwrap_err();
    assert!(
        error
            .to_string()
            .ends_with("iterative, threading, scheduled, prethreaded or own"),
        "{error}"
    );
    // An extra model takes no options, neither its own nor the inner ones.
    let error = ModelSpec::new("own")
        .threads(2)
        .build_with(&extra)
        .unwrap_err();
    assert!(matches!(error, SpecError::NotForModel { .. }), "{error:?}");
    let error = ModelSpec::new("preforked")
        .inner("own")
        .threads(2)
        .build_with(&extra)
        .unwrap_err();
    assert!(matches!(error, SpecError::NotForInner { .. }), "{error:?}");
}

#[test]
#[should_panic(expected = "built-in model's name")]
fn an_extra_model_may_not_take_a_built_in_name() {
    let _ = ExtraModels::new().with("threading", || Own);
}

/// A name `--mixin NAME` or `inner=NAME` could never carry (it would be cut at the `:`
/// or `,`, or trimmed) is refused as a built-in one is: the model could not be chosen.
#[test]
fn an_extra_model_needs_a_name_the_compact_form_can_carry() {
    for name in ["", "my:model", "a,b", " own", "own\t"] {
        let added = std::panic::catch_unwind(|| ExtraModels::new().with(name, || Own));
        assert!(added.is_err(), "{name:?} was accepted");
    }
    let extra = ExtraModels::new().with("my-own_2.0", || Own);
    let spec: ModelSpec = ModelSpec::parse_unchecked("preforked: inner = my-own_2.0").unwrap();
    assert_eq!(spec.build_with(&extra).unwrap().mixin.name(), "preforked");
    let spec = ModelSpec::parse_unchecked(" my-own_2.0 ").unwrap();
    assert_eq!(spec.build_with(&extra).unwrap().mixin.name(), "own");
}

#[cfg(feature = "clap")]
mod args {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        model: ModelArgs,
    }

    fn parse(args: &[&str]) -> ModelArgs {
        Cli::try_parse_from(std::iter::once("app").chain(args.iter().copied()))
            .unwrap()
            .model
    }

    #[test]
    fn flags_override_the_compact_form() {
        let args = parse(&[
            "--mixin",
            "preforked:workers=3,inner=prethreaded,inner-accept=locked",
            "--inner-accept",
            "handoff",
            "--threads",
            "2",
            "--heartbeat-timeout",
            "7",
            "--max-requests",
            "50",
        ]);
        let spec = args.spec().unwrap();
        assert_eq!(spec.workers, Some(3));
        assert_eq!(spec.inner_accept.as_deref(), Some("handoff"));
        assert_eq!(spec.threads, Some(2));
        assert_eq!(spec.heartbeat_timeout, Some(Duration::from_secs(7)));
        assert_eq!(spec.max_requests, Some(50));
        assert_eq!(args.build().unwrap().mixin.name(), "preforked");
    }

    /// `spec` built the model but skipped its own check, which the compact form runs.
    #[test]
    fn flags_are_checked_as_the_compact_form_is() {
        for (text, flags) in [
            (
                "threading:max-workers=0",
                &["--mixin", "threading", "--max-workers", "0"],
            ),
            (
                "preforked:workers=0",
                &["--mixin", "preforked", "--workers", "0"],
            ),
        ] {
            let parsed = text.parse::<ModelSpec>().map(|_| ()).unwrap_err();
            let flagged = parse(flags).spec().map(|_| ()).unwrap_err();
            assert!(
                matches!(flagged, SpecError::Config(_)),
                "{flags:?}: {flagged}"
            );
            assert_eq!(flagged, parsed, "{flags:?}");
        }
    }

    #[test]
    fn extra_models_reach_the_command_line() {
        let extra = extra();
        let args = parse(&["--mixin", "preforked", "--inner", "own"]);
        assert!(args.build().is_err());
        assert!(args.spec().is_err());
        assert!(args.build_with(&extra).is_ok());
        let args = parse(&["--mixin", "own"]);
        assert_eq!(args.build_with(&extra).unwrap().mixin.name(), "own");
        let args = parse(&["--mixin", "own", "--workers", "2"]);
        assert!(args.build_with(&extra).is_err());
    }

    #[test]
    fn the_help_states_the_real_defaults() {
        let help = Cli::command().render_long_help().to_string();
        let expected = [
            format!("(default {})", crate::Preforked::DEFAULT_WORKERS),
            format!("(default {})", super::super::build::PRETHREADED_THREADS),
            "up to 10 000 connections each".to_owned(),
        ];
        assert_eq!(super::super::build::INNER_SCHEDULED_CONNECTIONS, 10_000);
        for text in expected {
            assert!(help.contains(&text), "{text:?} not in\n{help}");
        }
    }
}

#[test]
fn extra_models_can_be_shared_between_threads() {
    fn shared<T: Send + Sync + 'static>() {}
    shared::<ExtraModels>();
}

#[test]
fn configurations_that_would_fail_or_mislead_later_are_refused_when_parsed() {
    for text in [
        // Given twice: one value would silently win.
        "preforked:workers=2,workers=8",
        "preforked:inner=scheduled,inner=prethreaded",
        // A stack no coroutine could get (one near usize::MAX overflowed its size sum
        // when the first connection came).
        "scheduled:stack-size=18446744073709551615",
        "scheduled:stack-size=1000000m",
        "preforked:inner=scheduled,stack-size=18446744073709551615",
        // More loops than the budget of stacks (2^63 overflowed the check itself).
        "scheduled:threads=9223372036854775808",
        "scheduled:threads=100000",
    ] {
        assert!(text.parse::<ModelSpec>().is_err(), "{text} was accepted");
    }
    assert!(matches!(
        "preforked:workers=2,workers=8".parse::<ModelSpec>(),
        Err(SpecError::Repeated { .. })
    ));
    assert!(
        "scheduled:stack-size=256m,threads=8"
            .parse::<ModelSpec>()
            .is_ok()
    );
}

/// `accept=reuseport` binds at `build`, with `SO_REUSEPORT` and the builder's settings,
/// and a bind that fails is the build's error, naming the address.
#[test]
fn a_reuseport_model_binds_at_build_with_so_reuseport() {
    use crate::handler::from_fn;
    let model = || {
        "preforked:accept=reuseport"
            .parse::<ModelSpec>()
            .unwrap()
            .build()
            .unwrap()
    };
    let noop = || from_fn(|_: &mut crate::Conn| Ok(()));
    let server = model()
        .server("127.0.0.1:0")
        .handle_signals(false)
        .build(noop)
        .unwrap();
    let addr = server.local_addr().unwrap();
    // Another listener may share the port only if both have SO_REUSEPORT.
    let beside = crate::Listener::bind_tcp_reuseport(addr, 16);
    assert!(beside.is_ok(), "{beside:?}");
    // 192.0.2.0/24 is TEST-NET-1: no interface has it.
    let Err(error) = model()
        .server("192.0.2.1:0")
        .handle_signals(false)
        .build(noop)
    else {
        panic!("bound an address no interface has");
    };
    let text = error.to_string();
    assert!(text.contains("192.0.2.1:0"), "{text}");
}
