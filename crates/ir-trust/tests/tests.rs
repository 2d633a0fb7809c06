mod cosign_written;
mod bounds;
mod independent;
mod judge;
mod keyless;
mod notation;
mod policy;
mod util;
