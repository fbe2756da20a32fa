//! Port publications: `8080:80`, `8080:80/udp`, `80` (the published port
//! assigned by the managers), or the long form
//! `published=8080,target=80,protocol=udp,mode=host,proxy-protocol=v2`.

use super::ValidationError;
use crate::api::{PortConfig, PortProtocol, ProxyProtocolVersion, PublishMode};

/// What a user sees when the form itself is wrong.
const EXPECTED: &str = "expected [PUBLISHED:]TARGET[/PROTOCOL] or \
                        [published=PORT,]target=PORT[,protocol=tcp|udp][,mode=ingress|host]\
                        [,proxy-protocol=v1|v2]";

/// Parses a port publication, short (`8080:80`, `8080:80/udp`: ingress mode) or long
/// (`published=8080,target=80,protocol=tcp|udp,mode=ingress|host,proxy-protocol=v1|v2`).
/// Ports must be in 1..=65535; an ingress port may leave the published port out
/// (`80`, `target=80`): it is then 0, and the managers assign one from
/// [`DYNAMIC_PORTS`] when the service is created or updated. A host-mode port
/// needs its published port. Unknown or repeated keys are refused, and so is a
/// PROXY protocol header on a UDP port.
pub fn parse_publish(input: &str) -> Result<PortConfig, ValidationError> {
    let err = |reason: String| ValidationError::Publish {
        input: input.to_string(),
        reason,
    };
    let s = input.trim();
    if s.contains('=') {
        parse_long(s).map_err(err)
    } else {
        parse_short(s).map_err(err)
    }
}

/// The published ports the managers assign to ingress ports published without
/// one, as Swarm does.
pub const DYNAMIC_PORTS: std::ops::RangeInclusive<u32> = 30000..=32767;

/// Most ports one range of [`parse_publish_range`] may publish: each is a
/// listener on every node.
pub const MAX_RANGE: usize = 1000;

/// Parses a port publication that may be a range in the short form
/// (`8080-8081:80-81`, `80-81/udp`: one port per number, published and target
/// ports paired in order), else as [`parse_publish`] does.
pub fn parse_publish_range(input: &str) -> Result<Vec<PortConfig>, ValidationError> {
    let s = input.trim();
    if s.contains('=') || !s.contains('-') {
        return parse_publish(input).map(|port| vec![port]);
    }
    let err = |reason: String| ValidationError::Publish {
        input: input.to_string(),
        reason,
    };
    let (ports, protocol) = match s.split_once('/') {
        Some((ports, protocol)) => (ports, Some(protocol)),
        None => (s, None),
    };
    let (published, target) = match ports.split_once(':') {
        Some((published, target)) => (Some(published), target),
        None => (None, ports),
    };
    let targets = parse_range("target", target).map_err(err)?;
    let published = published
        .map(|p| parse_range("published", p))
        .transpose()
        .map_err(err)?;
    if let Some(published) = &published
        && published.len() != targets.len()
    {
        return Err(err(format!(
            "{} published and {} target ports: the ranges must be as long",
            published.len(),
            targets.len()
        )));
    }
    if targets.len() > MAX_RANGE {
        return Err(err(format!(
            "{} ports in one range: at most {MAX_RANGE}",
            targets.len()
        )));
    }
    targets
        .iter()
        .enumerate()
        .map(|(i, target)| {
            let mut one = match &published {
                Some(published) => format!("{}:{target}", published[i]),
                None => target.to_string(),
            };
            if let Some(protocol) = protocol {
                one = format!("{one}/{protocol}");
            }
            parse_short(&one).map_err(err)
        })
        .collect()
}

/// Parses published ports to stop publishing, `PUBLISHED[/PROTOCOL]` or a range
/// `FIRST-LAST[/PROTOCOL]`.
pub fn parse_published_range(input: &str) -> Result<Vec<(u32, PortProtocol)>, ValidationError> {
    let s = input.trim();
    let (ports, protocol) = match s.split_once('/') {
        Some((ports, protocol)) => (ports, Some(protocol)),
        None => (s, None),
    };
    if !ports.contains('-') {
        return parse_published(input).map(|port| vec![port]);
    }
    let numbers = parse_range("published", ports).map_err(|reason| ValidationError::Publish {
        input: input.to_string(),
        reason,
    })?;
    numbers
        .iter()
        .map(|n| match protocol {
            Some(protocol) => format!("{n}/{protocol}"),
            None => n.to_string(),
        })
        .map(|one| {
            parse_published(&one).map_err(|e| match e {
                ValidationError::Publish { reason, .. } => ValidationError::Publish {
                    input: input.to_string(),
                    reason,
                },
                other => other,
            })
        })
        .collect()
}

/// `FIRST-LAST` (both included) or a single port, as a list of numbers.
fn parse_range(which: &str, value: &str) -> Result<Vec<u32>, String> {
    let Some((first, last)) = value.split_once('-') else {
        return Ok(vec![parse_port(which, value)?]);
    };
    let (first, last) = (parse_port(which, first)?, parse_port(which, last)?);
    if last < first {
        return Err(format!(
            "{which} port range \"{}\" ends before it starts",
            value.trim()
        ));
    }
    Ok((first..=last).collect())
}

/// Parses a published port alone, `PUBLISHED[/PROTOCOL]` (`8080`, `53/udp`), as
/// `service update --publish-rm` names the port to stop publishing.
pub fn parse_published(input: &str) -> Result<(u32, PortProtocol), ValidationError> {
    let s = input.trim();
    let (port, protocol) = match s.split_once('/') {
        Some((port, protocol)) => (port, parse_protocol(protocol)),
        None => (s, Ok(PortProtocol::Tcp)),
    };
    parse_port("published", port)
        .and_then(|port| Ok((port, protocol?)))
        .map_err(|reason| ValidationError::Publish {
            input: input.to_string(),
            reason,
        })
}

/// `PUBLISHED:TARGET[/PROTOCOL]`.
fn parse_short(s: &str) -> Result<PortConfig, String> {
    let (ports, protocol) = match s.split_once('/') {
        Some((ports, protocol)) => (ports, parse_protocol(protocol)?),
        None => (s, PortProtocol::Tcp),
    };
    let (published, target) = match ports.split_once(':') {
        Some((published, target)) => (parse_port("published", published)?, target),
        None if ports.trim().is_empty() => return Err(EXPECTED.to_string()),
        None => (0, ports),
    };
    Ok(PortConfig {
        protocol: protocol.into(),
        target_port: parse_port("target", target)?,
        published_port: published,
        publish_mode: PublishMode::Ingress.into(),
        proxy_protocol: ProxyProtocolVersion::None.into(),
    })
}

/// `published=P,target=T[,protocol=tcp|udp][,mode=ingress|host][,proxy-protocol=v1|v2]`,
/// keys in any order.
fn parse_long(s: &str) -> Result<PortConfig, String> {
    let mut published = None;
    let mut target = None;
    let mut protocol = None;
    let mut mode = None;
    let mut proxy = None;
    for field in s.split(',') {
        let (key, value) = field
            .split_once('=')
            .ok_or_else(|| format!("expected KEY=VALUE, found \"{field}\""))?;
        let key = key.trim();
        let value = value.trim();
        let first = match key.to_ascii_lowercase().as_str() {
            "published" => published.replace(parse_port("published", value)?).is_none(),
            "target" => target.replace(parse_port("target", value)?).is_none(),
            "protocol" => protocol.replace(parse_protocol(value)?).is_none(),
            "mode" => mode.replace(parse_mode(value)?).is_none(),
            "proxy-protocol" | "proxy_protocol" => {
                proxy.replace(parse_proxy_protocol(value)?).is_none()
            }
            _ => {
                return Err(format!(
                    "unknown key \"{key}\": expected published, target, protocol, mode \
                     or proxy-protocol"
                ));
            }
        };
        if !first {
            return Err(format!("\"{key}\" is given more than once"));
        }
    }
    let protocol = protocol.unwrap_or(PortProtocol::Tcp);
    let proxy = proxy.unwrap_or(ProxyProtocolVersion::None);
    if protocol == PortProtocol::Udp && proxy != ProxyProtocolVersion::None {
        return Err("the PROXY protocol header is for TCP ports only".to_string());
    }
    let mode = mode.unwrap_or(PublishMode::Ingress);
    if published.is_none() && mode == PublishMode::Host {
        return Err("a host-mode port needs its published port".to_string());
    }
    Ok(PortConfig {
        protocol: protocol.into(),
        target_port: target.ok_or("the target port is required")?,
        published_port: published.unwrap_or(0),
        publish_mode: mode.into(),
        proxy_protocol: proxy.into(),
    })
}

/// A port number in 1..=65535.
fn parse_port(which: &str, value: &str) -> Result<u32, String> {
    let value = value.trim();
    match value.parse::<u32>() {
        Ok(port @ 1..=65535) if value.bytes().all(|b| b.is_ascii_digit()) => Ok(port),
        _ => Err(format!(
            "{which} port \"{value}\" must be a number between 1 and 65535"
        )),
    }
}

/// `tcp` or `udp`, any case.
fn parse_protocol(value: &str) -> Result<PortProtocol, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "tcp" => Ok(PortProtocol::Tcp),
        "udp" => Ok(PortProtocol::Udp),
        _ => Err(format!("unknown protocol \"{value}\": must be tcp or udp")),
    }
}

/// `ingress` or `host`, any case.
fn parse_mode(value: &str) -> Result<PublishMode, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "ingress" => Ok(PublishMode::Ingress),
        "host" => Ok(PublishMode::Host),
        _ => Err(format!("unknown mode \"{value}\": must be ingress or host")),
    }
}

/// `none`, `v1` or `v2` (also `1`, `2`), any case.
fn parse_proxy_protocol(value: &str) -> Result<ProxyProtocolVersion, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "none" | "" => Ok(ProxyProtocolVersion::None),
        "v1" | "1" => Ok(ProxyProtocolVersion::V1),
        "v2" | "2" => Ok(ProxyProtocolVersion::V2),
        _ => Err(format!(
            "unknown proxy-protocol \"{value}\": must be v1, v2 or none"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_published_port_alone() {
        assert_eq!(parse_published("8080").unwrap(), (8080, PortProtocol::Tcp));
        assert_eq!(
            parse_published(" 53/UDP ").unwrap(),
            (53, PortProtocol::Udp)
        );
        assert_eq!(
            parse_published("8080:80").unwrap_err().to_string(),
            "invalid port publication \"8080:80\": published port \"8080:80\" must be a number \
             between 1 and 65535"
        );
        assert_eq!(
            parse_published("53/sctp").unwrap_err().to_string(),
            "invalid port publication \"53/sctp\": unknown protocol \"sctp\": must be tcp or udp"
        );
    }

    fn port(published: u32, target: u32, protocol: PortProtocol, mode: PublishMode) -> PortConfig {
        PortConfig {
            protocol: protocol.into(),
            target_port: target,
            published_port: published,
            publish_mode: mode.into(),
            proxy_protocol: ProxyProtocolVersion::None.into(),
        }
    }

    #[test]
    fn short_form() {
        use PortProtocol::*;
        use PublishMode::*;
        assert_eq!(parse_publish("8080:80"), Ok(port(8080, 80, Tcp, Ingress)));
        assert_eq!(
            parse_publish("8080:80/tcp"),
            Ok(port(8080, 80, Tcp, Ingress))
        );
        assert_eq!(parse_publish("53:53/udp"), Ok(port(53, 53, Udp, Ingress)));
        assert_eq!(parse_publish("53:53/UDP"), Ok(port(53, 53, Udp, Ingress)));
        assert_eq!(parse_publish("1:65535"), Ok(port(1, 65535, Tcp, Ingress)));
        // The published port left to the managers.
        assert_eq!(parse_publish("80"), Ok(port(0, 80, Tcp, Ingress)));
        assert_eq!(parse_publish(" 53/udp"), Ok(port(0, 53, Udp, Ingress)));
    }

    #[test]
    fn long_form() {
        use PortProtocol::*;
        use PublishMode::*;
        assert_eq!(
            parse_publish("published=8080,target=80"),
            Ok(port(8080, 80, Tcp, Ingress))
        );
        assert_eq!(
            parse_publish("target=53,published=5353,protocol=udp,mode=host"),
            Ok(port(5353, 53, Udp, Host))
        );
        assert_eq!(
            parse_publish("published = 8080, target = 80, mode = ingress"),
            Ok(port(8080, 80, Tcp, Ingress))
        );
        let mut v2 = port(80, 8080, Tcp, Ingress);
        v2.proxy_protocol = ProxyProtocolVersion::V2.into();
        assert_eq!(
            parse_publish("published=80,target=8080,proxy-protocol=v2"),
            Ok(v2)
        );
        let mut v1 = port(80, 8080, Tcp, Host);
        v1.proxy_protocol = ProxyProtocolVersion::V1.into();
        assert_eq!(
            parse_publish("mode=host,proxy_protocol=V1,published=80,target=8080"),
            Ok(v1)
        );
        assert_eq!(parse_publish("target=80"), Ok(port(0, 80, Tcp, Ingress)));
        assert_eq!(
            parse_publish("target=53,protocol=udp,mode=ingress"),
            Ok(port(0, 53, Udp, Ingress))
        );
    }

    #[test]
    fn ranges() {
        use PortProtocol::*;
        use PublishMode::*;
        assert_eq!(
            parse_publish_range("8080-8082:80-82"),
            Ok(vec![
                port(8080, 80, Tcp, Ingress),
                port(8081, 81, Tcp, Ingress),
                port(8082, 82, Tcp, Ingress)
            ])
        );
        assert_eq!(
            parse_publish_range("5000-5001/udp"),
            Ok(vec![
                port(0, 5000, Udp, Ingress),
                port(0, 5001, Udp, Ingress)
            ])
        );
        assert_eq!(
            parse_publish_range("8080:80"),
            Ok(vec![port(8080, 80, Tcp, Ingress)])
        );
        assert_eq!(
            parse_publish_range("published=8080,target=80,mode=host"),
            Ok(vec![port(8080, 80, Tcp, Host)])
        );
        let refused = [
            (
                "8080-8081:80",
                "2 published and 1 target ports: the ranges must be as long",
            ),
            ("80-79", "target port range \"80-79\" ends before it starts"),
            ("1-1001", "1001 ports in one range: at most 1000"),
            (
                "80-x",
                "target port \"x\" must be a number between 1 and 65535",
            ),
            (
                "8080-8081:80-81/sctp",
                "unknown protocol \"sctp\": must be tcp or udp",
            ),
        ];
        for (bad, reason) in refused {
            let err = parse_publish_range(bad).unwrap_err().to_string();
            assert_eq!(
                err,
                format!("invalid port publication \"{bad}\": {reason}"),
                "{bad}"
            );
        }
        assert_eq!(
            parse_published_range("53-54/udp"),
            Ok(vec![(53, Udp), (54, Udp)])
        );
        assert_eq!(parse_published_range("8080"), Ok(vec![(8080, Tcp)]));
        assert_eq!(
            parse_published_range("9-8").unwrap_err().to_string(),
            "invalid port publication \"9-8\": published port range \"9-8\" ends before it starts"
        );
        assert!(
            parse_published_range("8-9/x")
                .unwrap_err()
                .to_string()
                .starts_with("invalid port publication \"8-9/x\": unknown protocol")
        );
    }

    #[test]
    fn refused() {
        for bad in [
            "",
            "/tcp",
            "0",
            "0:80",
            "8080:0",
            "65536:80",
            "8080:65536",
            "-1:80",
            "+80:80",
            "a:80",
            "8080:80/sctp",
            "8080:80/",
            "8080:80:90",
            "published=8080",
            "target=80,mode=host",
            "published=8080,target=80,protocol=sctp",
            "published=8080,target=80,mode=bridge",
            "published=8080,target=80,foo=bar",
            "published=8080,target=80,target=81",
            "published=8080,target=80,",
            "published=8080,target",
            "published=8080,target=80,proxy-protocol=v3",
            "published=53,target=53,protocol=udp,proxy-protocol=v2",
            "published=80,target=80,proxy-protocol=v1,proxy-protocol=v2",
        ] {
            let err = parse_publish(bad).unwrap_err();
            assert!(matches!(err, ValidationError::Publish { .. }), "{bad:?}");
            assert!(err.to_string().contains(&format!("\"{bad}\"")), "{err}");
        }
    }

    #[test]
    fn messages_name_the_problem() {
        assert_eq!(
            parse_publish("0:80").unwrap_err().to_string(),
            "invalid port publication \"0:80\": published port \"0\" must be a number \
             between 1 and 65535"
        );
        assert!(
            parse_publish("published=1,target=2,foo=bar")
                .unwrap_err()
                .to_string()
                .contains("unknown key \"foo\"")
        );
        assert!(
            parse_publish("/udp")
                .unwrap_err()
                .to_string()
                .contains("expected [PUBLISHED:]TARGET")
        );
        assert_eq!(
            parse_publish("target=80,mode=host")
                .unwrap_err()
                .to_string(),
            "invalid port publication \"target=80,mode=host\": a host-mode port needs its \
             published port"
        );
    }
}
