//! Reserved concurrency per function and the cluster-wide concurrency limit (`concurrency.rs`
//! enforces them; the store keeps the reservations).
use lamina_proto::v1;

use super::{functions, provisioned, ApiError, Shared};

pub(crate) async fn put_function_concurrency(
    shared: &Shared,
    r: v1::PutFunctionConcurrencyRequest,
) -> Result<v1::FunctionConcurrency, ApiError> {
    let name = r.function_name;
    let reserved = r.reserved_concurrent_executions;
    functions::get(shared, &name).await?;
    // As Lambda: the reservation must cover the provisioned concurrency of all the function's
    // versions and aliases (provisioned sandboxes run inside the reservation).
    let owned = name.clone();
    let provisioned: u32 = shared
        .store(move |s| s.list_provisioned(Some(&owned)))
        .await?
        .iter()
        .map(|p| p.requested)
        .sum();
    if reserved < provisioned {
        return Err(ApiError::BadRequest(format!(
            "reserved concurrency {reserved} for function `{name}` is below its provisioned \
             concurrency ({provisioned} over its versions and aliases): lower or delete the \
             provisioned configurations first"
        )));
    }
    // Checked and applied in memory first (so two concurrent puts cannot both pass the check),
    // then stored; undone when storing fails.
    let previous = shared.limiter.set_reservation(&name, Some(reserved))?;
    let owned = name.clone();
    if let Err(e) = shared
        .store(move |s| s.put_reserved_concurrency(&owned, Some(reserved)))
        .await
    {
        shared.limiter.restore(&name, previous);
        return Err(e);
    }
    tracing::info!(function = %name, reserved, "reserved concurrency set");
    Ok(v1::FunctionConcurrency {
        function_name: name,
        reserved_concurrent_executions: Some(reserved),
    })
}

pub(crate) async fn get_function_concurrency(
    shared: &Shared,
    r: v1::GetFunctionConcurrencyRequest,
) -> Result<v1::FunctionConcurrency, ApiError> {
    let name = r.function_name;
    functions::get(shared, &name).await?;
    let owned = name.clone();
    let reserved = shared
        .store(move |s| s.get_reserved_concurrency(&owned))
        .await?;
    Ok(v1::FunctionConcurrency {
        function_name: name,
        reserved_concurrent_executions: reserved,
    })
}

pub(crate) async fn delete_function_concurrency(
    shared: &Shared,
    r: v1::DeleteFunctionConcurrencyRequest,
) -> Result<v1::FunctionConcurrency, ApiError> {
    let name = r.function_name;
    functions::get(shared, &name).await?;
    let owned = name.clone();
    shared
        .store(move |s| s.put_reserved_concurrency(&owned, None))
        .await?;
    shared.limiter.forget(&name);
    tracing::info!(function = %name, "reserved concurrency removed");
    Ok(v1::FunctionConcurrency {
        function_name: name,
        reserved_concurrent_executions: None,
    })
}

pub(crate) async fn get_account_settings(
    shared: &Shared,
    _r: v1::GetAccountSettingsRequest,
) -> Result<v1::AccountSettings, ApiError> {
    let f = shared.limiter.figures();
    Ok(v1::AccountSettings {
        concurrent_executions: f.limit,
        unreserved_concurrent_executions: f.unreserved,
        in_flight: f.in_flight,
    })
}

/// Fills what `GetFunction` shows beside the stored configuration: the function's reserved
/// concurrency and its provisioned-concurrency configurations with their status.
pub(crate) async fn describe(
    shared: &Shared,
    out: &mut v1::FunctionConfiguration,
) -> Result<(), ApiError> {
    let name = out.name.clone();
    out.reserved_concurrent_executions = shared
        .store(move |s| s.get_reserved_concurrency(&name))
        .await?;
    out.provisioned_concurrency = provisioned::list_for(shared, &out.name).await?;
    Ok(())
}
