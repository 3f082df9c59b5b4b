//! Long exception lists sent in parts: the daemon reads at most [`MAX_REQUEST_BYTES`] per request
//! (so a client cannot make it buffer without bound), and 10,000 CIDRs do not fit in one.
//!
//! Raising the limit instead would only move it: a list read from a file can always be longer.
//! Each part is one request and applied atomically; the list as a whole is not. So the CLI
//! parses every CIDR before sending anything (one bad item still changes nothing), and says
//! which parts were applied if a later one is refused (the lockout check, the exception limit).

use crate::{
    control::protocol::{Change, ChangeOptions, MAX_REQUEST_BYTES, Request},
    rules::Cidr,
};

/// `change` as the requests to send, in order: one, unless it is an exception list too long
/// for one request.
pub fn split(change: Change, opts: &ChangeOptions) -> Vec<Request> {
    // `Some(drop)`: an `except add`; `None`: an `except del`.
    let (cidrs, add) = match change {
        Change::ExceptAdd { cidrs, drop } => (cidrs, Some(drop)),
        Change::ExceptDel { cidrs } => (cidrs, None),
        change => {
            return vec![Request::Change {
                change,
                opts: opts.clone(),
            }];
        }
    };
    let request = |cidrs| Request::Change {
        change: match add {
            Some(drop) => Change::ExceptAdd { cidrs, drop },
            None => Change::ExceptDel { cidrs },
        },
        opts: opts.clone(),
    };
    // The request line is the envelope plus each quoted CIDR and a comma between two; with the
    // newline that ends it, it must fit in MAX_REQUEST_BYTES.
    let envelope = line_len(&request(Vec::new()));
    let mut parts = Vec::new();
    let mut part: Vec<Cidr> = Vec::new();
    let mut len = envelope;
    for cidr in cidrs {
        let item = serde_json::to_string(&cidr)
            .expect("a CIDR serializes")
            .len();
        let comma = usize::from(!part.is_empty());
        if !part.is_empty() && len + comma + item > MAX_REQUEST_BYTES {
            parts.push(request(std::mem::take(&mut part)));
            len = envelope;
        }
        len += usize::from(!part.is_empty()) + item;
        part.push(cidr);
    }
    parts.push(request(part));
    parts
}

/// The bytes `request` takes on the socket, newline included.
fn line_len(request: &Request) -> usize {
    serde_json::to_vec(request)
        .expect("requests serialize")
        .len()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| {
                if i % 2 == 0 {
                    format!("10.{}.{}.0/24", i / 256 % 256, i % 256)
                } else {
                    format!("2001:db8:{:x}:{:x}::/64", i / 65536, i % 65536)
                }
            })
            .collect()
    }

    fn cidrs(n: usize) -> Vec<Cidr> {
        crate::cli::client::parse_list(&texts(n)).unwrap()
    }

    fn listed(request: &Request) -> &[Cidr] {
        match request {
            Request::Change {
                change: Change::ExceptAdd { cidrs, .. } | Change::ExceptDel { cidrs },
                ..
            } => cidrs,
            other => panic!("not an exception change: {other:?}"),
        }
    }

    #[test]
    fn long_lists_split_into_requests_that_fit_and_keep_order() {
        let opts = ChangeOptions {
            caller: Some("192.0.2.7".parse().unwrap()),
            ..Default::default()
        };
        let all = cidrs(10_000);
        let parts = split(
            Change::ExceptAdd {
                cidrs: all.clone(),
                drop: true,
            },
            &opts,
        );
        assert!(parts.len() > 1, "{} parts", parts.len());
        for part in &parts {
            assert!(line_len(part) <= MAX_REQUEST_BYTES, "{}", line_len(part));
            let Request::Change { opts: o, change } = part else {
                panic!("{part:?}")
            };
            assert_eq!(o, &opts);
            assert!(matches!(change, Change::ExceptAdd { drop: true, .. }));
        }
        // Nearly full: a part ends only when the next CIDR would not fit.
        assert!(line_len(&parts[0]) + 40 > MAX_REQUEST_BYTES);
        let sent: Vec<Cidr> = parts.iter().flat_map(|p| listed(p).to_vec()).collect();
        assert_eq!(sent, all);

        let del = split(Change::ExceptDel { cidrs: cidrs(3) }, &opts);
        assert_eq!(del.len(), 1);
        assert_eq!(listed(&del[0]), cidrs(3));
        let other = split(Change::PortsClear {}, &opts);
        assert_eq!(other.len(), 1);
    }

    #[test]
    fn one_bad_cidr_refuses_the_whole_list_before_anything_is_sent() {
        let mut all = texts(5_000);
        all.push("10.0.0.1/8".into());
        let err = crate::cli::client::parse_list::<Cidr>(&all)
            .unwrap_err()
            .to_string();
        assert!(err.contains("10.0.0.1/8"), "{err}");
    }
}
