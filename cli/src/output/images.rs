//! `rswarm image ls`.

use rswarm_proto::api::Image;
use serde::Serialize;

use super::{plain_table, render};

/// One image as `image ls` shows it; also its JSON shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageRow {
    /// The manifest digest.
    pub id: String,
    /// `NAME:TAG` references.
    pub names: Vec<String>,
    /// Sum of the blob sizes, in bytes.
    pub size: u64,
    /// Managers holding every blob.
    pub managers: usize,
}

/// Builds the rows, sorted by first name then id.
pub fn image_rows(images: &[Image]) -> Vec<ImageRow> {
    let mut rows: Vec<ImageRow> = images
        .iter()
        .map(|image| ImageRow {
            id: image.id.clone(),
            names: image.names.clone(),
            size: image.blobs.iter().map(|b| b.size).sum(),
            managers: image.holders.len(),
        })
        .collect();
    rows.sort_by(|a, b| (a.names.first(), &a.id).cmp(&(b.names.first(), &b.id)));
    rows
}

/// The first 12 hex digits of a digest, as docker shows image ids.
pub fn short_id(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex.get(..12).unwrap_or(hex)
}

/// A size as docker prints it: decimal units, three significant digits (`7.84MB`).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    let digits = if unit == 0 || value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    format!("{value:.digits$}{}", UNITS[unit])
}

/// `volume ls`: name, size and the containers using each volume.
pub fn volumes_table(volumes: &[rswarm_proto::api::Volume]) -> String {
    let mut table = plain_table(&["VOLUME NAME", "SIZE", "USED BY"]);
    for volume in volumes {
        table.add_row(vec![
            volume.name.clone(),
            human_size(volume.size_bytes),
            volume.used_by.join(", "),
        ]);
    }
    render(&table)
}

/// Docker's `image ls` table, one line per name (an image with several names shows
/// on several lines).
pub fn images_table(rows: &[ImageRow]) -> String {
    let mut table = plain_table(&["REPOSITORY", "TAG", "IMAGE ID", "SIZE", "MANAGERS"]);
    for row in rows {
        let names: Vec<(String, String)> = if row.names.is_empty() {
            vec![("<none>".into(), "<none>".into())]
        } else {
            row.names
                .iter()
                .map(|n| match n.rsplit_once(':') {
                    Some((repo, tag)) if !tag.contains('/') => (repo.to_owned(), tag.to_owned()),
                    _ => (n.clone(), "<none>".into()),
                })
                .collect()
        };
        for (repo, tag) in names {
            table.add_row(vec![
                repo,
                tag,
                short_id(&row.id).to_owned(),
                human_size(row.size),
                row.managers.to_string(),
            ]);
        }
    }
    render(&table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rswarm_proto::api::BlobRef;

    #[test]
    fn one_line_per_name_with_short_ids() {
        let image = Image {
            id: format!("sha256:{}", "ab".repeat(32)),
            names: vec!["web:1".into(), "registry:5000/web:latest".into()],
            blobs: vec![
                BlobRef {
                    digest: "sha256:1".into(),
                    size: 1024,
                },
                BlobRef {
                    digest: "sha256:2".into(),
                    size: 2048,
                },
            ],
            holders: vec!["m1".into(), "m2".into()],
            ..Default::default()
        };
        let rows = image_rows(&[image]);
        assert_eq!(rows[0].size, 3072);
        let table = images_table(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[1].starts_with("web"), "{table}");
        assert!(lines[1].contains("ababababab"), "{table}");
        assert!(
            lines[2].starts_with("registry:5000/web   latest"),
            "{table}"
        );
        assert!(table.contains("3.07kB"), "{table}");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(7_840_000), "7.84MB");
        assert_eq!(human_size(123_400_000), "123MB");
    }
}
