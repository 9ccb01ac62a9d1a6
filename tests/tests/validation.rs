//! Every invalid input is refused with an error naming the field, and changes nothing.
use lamina_e2e::*;

fn expect_invalid(r: Result<v1::FunctionConfiguration, lamina_client::Error>, needle: &str) {
    let err = r.expect_err("must be refused");
    let status = err
        .status()
        .unwrap_or_else(|| panic!("not an API error: {err}"));
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains(needle),
        "{:?} does not mention {needle:?}",
        status.message()
    );
}

const OK_ZIP: &str = "def handler(e, c):\n    return 1\n";

#[test]
fn invalid_function_specs_are_refused() {
    run(async {
        let cluster = Cluster::start(0)?;
        let c = cluster.client().await?;
        let zip = || zip_of(&[("app.py", OK_ZIP, 0o644)]);
        let mut s = spec("m", "python3.11", "app.handler");
        s.memory_size_mb = 64;
        expect_invalid(
            c.create_function(s, zip()).await,
            "memory must be 128..10240 MB, got 64",
        );
        let mut s = spec("t", "python3.11", "app.handler");
        s.timeout_seconds = 901;
        expect_invalid(
            c.create_function(s, zip()).await,
            "timeout must be 1..900 seconds, got 901",
        );
        expect_invalid(
            c.create_function(spec("bad name", "python3.11", "app.handler"), zip())
                .await,
            "name",
        );
        expect_invalid(
            c.create_function(spec("r", "python2.7", "app.handler"), zip())
                .await,
            "runtime must be one of",
        );
        expect_invalid(
            c.create_function(spec("h", "python3.11", "app"), zip())
                .await,
            "handler",
        );
        let s = with_env(
            spec("e", "python3.11", "app.handler"),
            &[("AWS_REGION", "x")],
        );
        expect_invalid(c.create_function(s, zip()).await, "reserved");
        let big = "x".repeat(5000);
        let s = with_env(
            spec("e2", "python3.11", "app.handler"),
            &[("BIG", big.as_str())],
        );
        expect_invalid(c.create_function(s, zip()).await, "4096");
        let mut s = spec("eph", "python3.11", "app.handler");
        s.ephemeral_storage_mb = 100;
        expect_invalid(c.create_function(s, zip()).await, "ephemeral");
        expect_invalid(
            c.create_function(
                spec("nz", "python3.11", "app.handler"),
                b"not a zip".to_vec(),
            )
            .await,
            "zip",
        );
        // Nothing was created.
        assert!(c.list_functions().await?.is_empty());
        Ok(())
    })
}

#[test]
fn invalid_invocations_and_conflicts_are_refused() {
    run(async {
        let cluster = Cluster::start(1)?;
        let c = cluster.client().await?;
        let name = unique("ok");
        create_python(&c, &name, OK_ZIP).await?;
        let dup = create_python(&c, &name, OK_ZIP)
            .await
            .expect_err("duplicate");
        assert_eq!(
            dup.downcast_ref::<lamina_client::Error>()
                .and_then(|e| e.status())
                .map(|s| s.code()),
            Some(tonic::Code::AlreadyExists)
        );

        let big = vec![b'x'; 6 * 1024 * 1024 + 1];
        let err = c
            .invoke(v1::InvokeRequest {
                function_name: name.clone(),
                payload: big,
                ..Default::default()
            })
            .await
            .expect_err("payload over 6 MB");
        let st = err.status().expect("api error");
        assert_eq!(st.code(), tonic::Code::InvalidArgument);
        assert!(st.message().contains("payload"), "{}", st.message());

        let err = c.get_function("does-not-exist").await.expect_err("unknown");
        assert_eq!(err.status().map(|s| s.code()), Some(tonic::Code::NotFound));
        assert!(err.to_string().contains("does-not-exist"), "{err}");
        let err = invoke(&c, "does-not-exist", "{}")
            .await
            .expect_err("unknown");
        assert!(err.to_string().contains("does-not-exist"), "{err}");

        let mut upd = v1::UpdateFunctionConfigurationRequest {
            function_name: name.clone(),
            ..Default::default()
        };
        upd.timeout_seconds = Some(0);
        let err = c
            .update_function_configuration(upd)
            .await
            .expect_err("bad timeout");
        assert!(
            err.to_string()
                .contains("timeout must be 1..900 seconds, got 0"),
            "{err}"
        );
        // The function is unchanged and still works.
        assert_eq!(c.get_function(&name).await?.timeout_seconds, 10);
        assert_eq!(json(&invoke(&c, &name, "{}").await?), 1);
        Ok(())
    })
}
