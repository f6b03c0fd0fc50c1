//! The columns the tool reads, and where the input's header puts them: header names match
//! the contract's names and aliases case-insensitively, ignoring spaces, `_` and `-`.

use std::path::Path;

use super::{InputError, InputOptions};

/// A column the tool reads; every other column of the input is carried along but ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    TenantId,
    FirstName,
    LastName,
    Email,
    PhoneNumber,
    DateAgreed,
}

impl Column {
    pub const ALL: [Column; 6] = [
        Column::TenantId,
        Column::FirstName,
        Column::LastName,
        Column::Email,
        Column::PhoneNumber,
        Column::DateAgreed,
    ];

    /// The contract's name of the column.
    pub fn name(self) -> &'static str {
        match self {
            Column::TenantId => "customer_tenant_id",
            Column::FirstName => "first_name",
            Column::LastName => "last_name",
            Column::Email => "email",
            Column::PhoneNumber => "phone_number",
            Column::DateAgreed => "date_agreed",
        }
    }

    /// Accepted header spellings, already normalised (see [`normalise_header`]).
    fn aliases(self) -> &'static [&'static str] {
        match self {
            Column::TenantId => &["customertenantid", "tenantid", "customerid", "microsoftid"],
            Column::FirstName => &["firstname"],
            Column::LastName => &["lastname"],
            Column::Email => &["email", "emailaddress"],
            Column::PhoneNumber => &["phonenumber", "phone"],
            Column::DateAgreed => &["dateagreed"],
        }
    }

    fn alias_hint(self) -> &'static str {
        match self {
            Column::TenantId => " (also accepted: tenant_id, customer_id, microsoft_id)",
            Column::Email => " (also accepted: email_address)",
            Column::PhoneNumber => " (also accepted: phone)",
            _ => "",
        }
    }
}

/// Header names match case-insensitively, ignoring spaces, `_` and `-`.
pub(crate) fn normalise_header(raw: &str) -> String {
    raw.trim_start_matches('\u{feff}')
        .chars()
        .filter(|c| !matches!(c, ' ' | '_' | '-') && !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Where each known column sits in the input's records.
#[derive(Debug, Clone, Default)]
pub(crate) struct ColumnMap {
    positions: [Option<usize>; 6],
}

impl ColumnMap {
    pub(crate) fn get(&self, column: Column) -> Option<usize> {
        self.positions[column as usize]
    }
}

pub(super) fn map_columns(
    path: &Path,
    names: &[String],
    options: &InputOptions,
    delimiter: u8,
) -> Result<ColumnMap, InputError> {
    let mut map = ColumnMap::default();
    for (pos, name) in names.iter().enumerate() {
        let norm = normalise_header(name);
        let Some(column) = Column::ALL
            .into_iter()
            .find(|c| c.aliases().contains(&norm.as_str()))
        else {
            continue;
        };
        if let Some(prev) = map.positions[column as usize] {
            return Err(InputError::AmbiguousColumn {
                path: path.to_path_buf(),
                column: column.name(),
                first: names[prev].clone(),
                second: name.clone(),
            });
        }
        map.positions[column as usize] = Some(pos);
    }
    for column in &options.required {
        if map.get(*column).is_none() {
            let header = names.join(&*(delimiter as char).to_string());
            let other = if delimiter == b',' { ';' } else { ',' };
            let delimiter_hint = if names.len() == 1 && names[0].contains(other) {
                if other == ';' {
                    " (the header looks semicolon-separated: try --delimiter ';')"
                } else {
                    " (the header looks comma-separated: try --delimiter ',')"
                }
            } else {
                ""
            };
            return Err(InputError::MissingColumn {
                path: path.to_path_buf(),
                column: column.name(),
                hint: column.alias_hint(),
                header: crate::domain::shorten(&header),
                delimiter_hint,
            });
        }
    }
    Ok(map)
}
