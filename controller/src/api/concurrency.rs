//! Reserved concurrency per function and the cluster-wide concurrency limit (`concurrency.rs`
//! enforces them; the store keeps the reservations). Transport-neutral: the gRPC `Concurrency`
//! service and the REST API both call these.
use lamina_proto::v1;

use super::{functions, provisioned, ApiError, Shared};
use crate::concurrency::AccountFigures;

/// Reserves `reserved` of the cluster-wide limit for function `name` (0 disables it).
pub(crate) async fn put_function_concurrency(
    shared: &Shared,
    name: String,
    reserved: u32,
) -> Result<(), ApiError> {
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
    Ok(())
}

/// The reservation of function `name` (`None`: it uses the unreserved pool).
pub(crate) async fn get_function_concurrency(
    shared: &Shared,
    name: &str,
) -> Result<Option<u32>, ApiError> {
    functions::get(shared, name).await?;
    let owned = name.to_string();
    shared
        .store(move |s| s.get_reserved_concurrency(&owned))
        .await
}

/// Removes the reservation of function `name`.
pub(crate) async fn delete_function_concurrency(
    shared: &Shared,
    name: String,
) -> Result<(), ApiError> {
    functions::get(shared, &name).await?;
    let owned = name.clone();
    shared
        .store(move |s| s.put_reserved_concurrency(&owned, None))
        .await?;
    shared.limiter.forget(&name);
    tracing::info!(function = %name, "reserved concurrency removed");
    Ok(())
}

/// The cluster-wide limit, its unreserved share and the invocations in flight.
pub(crate) fn get_account_settings(shared: &Shared) -> AccountFigures {
    shared.limiter.figures()
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
