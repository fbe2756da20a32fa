//! Rendering of control API replies: plain tables like docker's, or (`--format json`)
//! exactly one JSON value, with enums as readable names rather than numbers.

mod cluster;
mod images;
mod inspect;
pub mod names;
mod nodes;
mod services;
mod tasks;

use std::io::Write;

use comfy_table::{ContentArrangement, Table, presets};

pub use cluster::{cluster_status_json, cluster_status_table};
pub use images::{image_rows, images_table, short_id, volumes_table};
pub use inspect::{node_json, service_json};
pub use nodes::{node_rows, nodes_table};
pub use services::{port as port_text, service_rows, services_table};
pub use tasks::{task_rows, tasks_table};

/// Writes one JSON value, pretty-printed, followed by a newline.
pub fn write_json(out: &mut dyn Write, value: &serde_json::Value) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}

/// A table in docker's plain style: a header row, no borders, columns separated by
/// three spaces.
fn plain_table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_style(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.to_vec());
    for column in table.column_iter_mut() {
        column.set_padding((0, 3));
    }
    table
}

/// Renders a table without the trailing spaces of its last column.
fn render(table: &Table) -> String {
    table.trim_fmt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_tables_have_no_borders() {
        let mut table = plain_table(&["ID", "NAME"]);
        table.add_row(vec!["abc", "web"]);
        table.add_row(vec!["defghi", "db"]);
        assert_eq!(render(&table), "ID       NAME\nabc      web\ndefghi   db");
    }
}
