//! Brute-force throttling and lockout.

/// Creates this module's tables (a migration of `idp.redb`).
pub(crate) fn create_tables(_txn: &kopa_store::WriteTxn<'_>) -> Result<(), kopa_store::StoreError> {
    Ok(())
}
