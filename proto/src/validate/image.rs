//! Image references.

use super::ValidationError;

/// Puts an image reference in the form images are stored under: `NAME:TAG`, with
/// `latest` when no tag is given (`web` → `web:latest`,
/// `registry:5000/team/web` → `registry:5000/team/web:latest`).
///
/// Names are lower-case path components of letters, digits, `.`, `_` and `-`,
/// separated by `/`; the first may carry a `:PORT`. Tags are up to 128 letters,
/// digits, `_`, `.` and `-`, not starting with `.` or `-`.
pub fn normalize_image_name(input: &str) -> Result<String, ValidationError> {
    let bad = |reason: &str| ValidationError::ImageName {
        input: input.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(bad("empty"));
    }
    if trimmed.contains('@') {
        return Err(bad("digest references are not supported; use NAME[:TAG]"));
    }
    let last_slash = trimmed.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match trimmed[last_slash..].rfind(':') {
        Some(i) => (&trimmed[..last_slash + i], &trimmed[last_slash + i + 1..]),
        None => (trimmed, "latest"),
    };
    for (n, component) in name.split('/').enumerate() {
        let component = match (n, component.split_once(':')) {
            (0, Some((host, port)))
                if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) =>
            {
                host
            }
            (_, Some(_)) => {
                return Err(bad(
                    "`:` may only separate the tag, or a port in the first component",
                ));
            }
            (_, None) => component,
        };
        let edge_ok =
            |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !edge_ok(component.chars().next()) || !edge_ok(component.chars().last()) {
            return Err(bad(
                "each name component must start and end with a lower-case letter or digit",
            ));
        }
        if !component
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        {
            return Err(bad(
                "names hold lower-case letters, digits, `.`, `_`, `-` and `/`",
            ));
        }
    }
    let tag_ok = tag.len() <= 128
        && tag
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !tag_ok {
        return Err(bad(
            "the tag holds up to 128 letters, digits, `_`, `.` and `-`, not starting with `.` or `-`",
        ));
    }
    Ok(format!("{name}:{tag}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_get_a_tag() {
        assert_eq!(normalize_image_name("web").unwrap(), "web:latest");
        assert_eq!(normalize_image_name("web:1.2").unwrap(), "web:1.2");
        assert_eq!(
            normalize_image_name(" team/web ").unwrap(),
            "team/web:latest"
        );
        assert_eq!(
            normalize_image_name("registry:5000/team/web").unwrap(),
            "registry:5000/team/web:latest"
        );
        assert_eq!(
            normalize_image_name("registry:5000/web:v1").unwrap(),
            "registry:5000/web:v1"
        );
    }

    #[test]
    fn bad_names_say_why() {
        for bad in [
            "",
            "Web",
            "web:",
            "web:-x",
            "-web",
            "web/",
            "a@sha256:00",
            "a:b/c",
            "we b",
        ] {
            let err = normalize_image_name(bad).unwrap_err().to_string();
            assert!(err.starts_with("invalid image name"), "{bad}: {err}");
        }
    }
}
