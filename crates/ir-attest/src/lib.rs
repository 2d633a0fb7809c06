//! Arm CCA attestation for RA-TLS.
