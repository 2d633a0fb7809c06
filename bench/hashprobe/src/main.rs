//! `hashprobe DIR THREADS BUF_KIB BACKEND MODE` hashes every file of at
//! least 1 MiB under DIR with SHA-256, largest first, on THREADS threads
//! (rayon, as the loader does), and prints the rate in MiB/s.
//!
//! - BACKEND: `sha2` (the RustCrypto crate ir-oci uses) or `awslc`
//!   (aws-lc-rs, already linked through rustls).
//! - MODE: `read` (read(2) into a BUF_KIB buffer, as the loader does),
//!   `mmap` (a populated read-only mapping, hashed in BUF_KIB slices), or
//!   `mem` (no I/O: hashes a BUF_KIB buffer over and over, as many bytes
//!   as the files hold; the pure hashing rate).

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use sha2::Digest;

fn walk(dir: &Path, out: &mut Vec<(PathBuf, u64)>) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let entry = entry.expect("entry");
        let meta = entry.metadata().expect("metadata");
        if meta.is_dir() {
            walk(&entry.path(), out);
        } else if meta.size() >= 1 << 20 {
            out.push((entry.path(), meta.size()));
        }
    }
}

enum Hasher {
    Sha2(sha2::Sha256),
    AwsLc(aws_lc_rs::digest::Context),
}

impl Hasher {
    fn new(backend: &str) -> Hasher {
        match backend {
            "sha2" => Hasher::Sha2(sha2::Sha256::new()),
            "awslc" => Hasher::AwsLc(aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256)),
            other => panic!("unknown backend {other}"),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha2(h) => h.update(data),
            Hasher::AwsLc(h) => h.update(data),
        }
    }

    fn finish(self) -> Vec<u8> {
        match self {
            Hasher::Sha2(h) => h.finalize().to_vec(),
            Hasher::AwsLc(h) => h.finish().as_ref().to_vec(),
        }
    }
}

fn hash_file(path: &Path, size: u64, backend: &str, mode: &str, buf: &mut [u8]) -> Vec<u8> {
    let mut h = Hasher::new(backend);
    let mut file = std::fs::File::open(path).expect("open");
    match mode {
        "mem" => {
            let mut left = size;
            while left > 0 {
                let n = (buf.len() as u64).min(left) as usize;
                h.update(&buf[..n]);
                left -= n as u64;
            }
        }
        "mmap" => {
            // SAFETY: a probe over files nobody changes while it runs.
            let map = unsafe { memmap2::MmapOptions::new().populate().map(&file) }.expect("mmap");
            let _ = map.advise(memmap2::Advice::Sequential);
            for chunk in map.chunks(buf.len()) {
                h.update(chunk);
            }
        }
        "read" => loop {
            let n = file.read(buf).expect("read");
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        },
        other => panic!("unknown mode {other}"),
    }
    h.finish()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        eprintln!("usage: hashprobe DIR THREADS BUF_KIB sha2|awslc read|mmap|mem");
        std::process::exit(2);
    }
    let threads: usize = args[2].parse().expect("THREADS");
    let kib: usize = args[3].parse().expect("BUF_KIB");
    let (backend, mode) = (args[4].as_str(), args[5].as_str());
    let mut files = Vec::new();
    walk(Path::new(&args[1]), &mut files);
    files.sort_by_key(|f| std::cmp::Reverse(f.1));
    let total: u64 = files.iter().map(|f| f.1).sum();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("pool");
    let start = Instant::now();
    let digests: usize = pool.install(|| {
        files
            .par_iter()
            .map_init(
                || vec![0u8; kib << 10],
                |buf, (path, size)| hash_file(path, *size, backend, mode, buf).len(),
            )
            .sum()
    });
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(digests, 32 * files.len());
    println!(
        "{backend:5} {mode:4} threads={threads} buf={kib:5}KiB  {:.0} MiB/s  ({secs:.3}s, {} files)",
        total as f64 / secs / 1048576.0,
        files.len()
    );
}
