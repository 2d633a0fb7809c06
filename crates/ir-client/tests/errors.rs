//! The client's errors: one line, causes kept as data.

use ir_client::{Error, ReferenceError, TokenError};
use std::error::Error as _;

#[test]
fn causes_are_kept_as_data_under_a_one_line_display() {
    let e: Error = ir_client::ImageLocation::parse("http://host/App")
        .unwrap_err()
        .into();
    assert_eq!(e.exit_code(), 2);
    assert!(e.to_string().starts_with("reference \"http://host/App\": "));
    let detail = e.source().unwrap();
    assert!(detail.is::<ReferenceError>());
    let name = detail.source().unwrap().downcast_ref();
    assert!(
        matches!(name, Some(ir_oci::name::NameError::InvalidName(n)) if n == "App"),
        "{e}"
    );

    let e = ir_client::emulated::measurements("sha-256", Some("zz"), &[]).unwrap_err();
    assert_eq!(e.exit_code(), 5);
    assert!(e
        .to_string()
        .starts_with("RA-TLS token: RIM \"zz\" is not hex"));
    let detail = e.source().unwrap();
    assert!(matches!(
        detail.downcast_ref(),
        Some(TokenError::NotHex { .. })
    ));
    assert!(detail.source().unwrap().is::<hex::FromHexError>());

    let e = ir_client::ratls::root_store(b"-----BEGIN CERTIFICATE-----\n!!\n").unwrap_err();
    assert_eq!(e.exit_code(), 1);
    assert!(e.to_string().starts_with("TLS: CA file: "), "{e}");
    assert!(e
        .source()
        .and_then(|s| s.source())
        .unwrap()
        .is::<rustls::pki_types::pem::Error>());
    assert!(!e.to_string().contains('\n'));
}
