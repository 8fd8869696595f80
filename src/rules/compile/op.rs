//! The operators a `where` condition may use. Each one knows its name in rule files, the
//! kind of operand it takes, the SQL it compiles to and its one-line doc, so the parser,
//! the compiler, `rules check` and the docs cannot disagree about what exists.

use std::fmt;
use std::str::FromStr;

/// What a condition gives an operator to compare with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperandKind {
    /// No operand: `value` and `param` are errors.
    None,
    /// One value of any type but a list.
    Scalar,
    /// A list of strings.
    List,
    /// A glob pattern; checked like a scalar, compared with SQLite's `GLOB`.
    Glob,
    /// An age: a string like `"90d"`, or an integer param counting days.
    Age,
}

impl OperandKind {
    /// What the operand must be, as written after "needs" in a `wrong-value-type` message
    /// about a literal.
    pub fn literal_expectation(self) -> &'static str {
        match self {
            OperandKind::Age => "an age string like \"90d\"",
            OperandKind::List => "a list of strings",
            OperandKind::None | OperandKind::Scalar | OperandKind::Glob => "a single value",
        }
    }

    /// The same for a param's default: an integer param counts days when used as an age.
    pub fn param_expectation(self) -> &'static str {
        match self {
            OperandKind::Age => "an integer (days) or an age string",
            other => other.literal_expectation(),
        }
    }
}

/// A condition's operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `eq`
    Eq,
    /// `ne`
    Ne,
    /// `lt`
    Lt,
    /// `le`
    Le,
    /// `gt`
    Gt,
    /// `ge`
    Ge,
    /// `in`
    In,
    /// `not_in`
    NotIn,
    /// `matches`
    Matches,
    /// `absent`
    Absent,
    /// `present`
    Present,
    /// `empty`
    Empty,
    /// `not_empty`
    NotEmpty,
    /// `contains`
    Contains,
    /// `older_than`
    OlderThan,
    /// `newer_than`
    NewerThan,
    /// `within_next`
    WithinNext,
}

impl Op {
    /// Every operator, in the order `rules check` lists them.
    pub const ALL: [Op; 17] = [
        Op::Eq,
        Op::Ne,
        Op::Lt,
        Op::Le,
        Op::Gt,
        Op::Ge,
        Op::In,
        Op::NotIn,
        Op::Matches,
        Op::Absent,
        Op::Present,
        Op::Empty,
        Op::NotEmpty,
        Op::Contains,
        Op::OlderThan,
        Op::NewerThan,
        Op::WithinNext,
    ];

    /// The name written after `op =` in a rule file.
    pub fn name(self) -> &'static str {
        match self {
            Op::Eq => "eq",
            Op::Ne => "ne",
            Op::Lt => "lt",
            Op::Le => "le",
            Op::Gt => "gt",
            Op::Ge => "ge",
            Op::In => "in",
            Op::NotIn => "not_in",
            Op::Matches => "matches",
            Op::Absent => "absent",
            Op::Present => "present",
            Op::Empty => "empty",
            Op::NotEmpty => "not_empty",
            Op::Contains => "contains",
            Op::OlderThan => "older_than",
            Op::NewerThan => "newer_than",
            Op::WithinNext => "within_next",
        }
    }

    /// What the operator means, in one line.
    pub fn doc(self) -> &'static str {
        match self {
            Op::Eq => "equals the value",
            Op::Ne => "differs from the value (a missing value differs)",
            Op::Lt => "less than",
            Op::Le => "less than or equal",
            Op::Gt => "greater than",
            Op::Ge => "greater than or equal",
            Op::In => "is one of a list",
            Op::NotIn => "is not one of a list (a missing value is not in it)",
            Op::Matches => "matches a glob pattern (`*`, `?`, `[a-z]`; case-sensitive)",
            Op::Absent => "is missing (null)",
            Op::Present => "is not missing",
            Op::Empty => "a JSON list column that is missing or has no items",
            Op::NotEmpty => "a JSON list column with at least one item",
            Op::Contains => "a JSON list column that holds the value",
            Op::OlderThan => "a time more than the age before now",
            Op::NewerThan => "a time less than the age before now",
            Op::WithinNext => "a time before now plus the age (times already past included)",
        }
    }

    /// The operand the operator takes.
    pub fn operand(self) -> OperandKind {
        match self {
            Op::Eq | Op::Ne | Op::Lt | Op::Le | Op::Gt | Op::Ge | Op::Contains => {
                OperandKind::Scalar
            }
            Op::In | Op::NotIn => OperandKind::List,
            Op::Matches => OperandKind::Glob,
            Op::Absent | Op::Present | Op::Empty | Op::NotEmpty => OperandKind::None,
            Op::OlderThan | Op::NewerThan | Op::WithinNext => OperandKind::Age,
        }
    }

    /// The SQL predicate over column expression `col`; `operand` is the bound parameter
    /// (`:c1`), unused by operators whose kind is [`OperandKind::None`]. An age operand is
    /// bound in seconds and compared with `:now`.
    pub fn sql(self, col: &str, operand: &str) -> String {
        match self {
            Op::Eq => format!("{col} = {operand}"),
            Op::Ne => format!("{col} IS NOT {operand}"),
            Op::Lt => format!("{col} < {operand}"),
            Op::Le => format!("{col} <= {operand}"),
            Op::Gt => format!("{col} > {operand}"),
            Op::Ge => format!("{col} >= {operand}"),
            Op::In => format!("{col} IN (SELECT value FROM json_each({operand}))"),
            // NOT IN over a NULL column is NULL, not true: a missing value is "not in".
            Op::NotIn => {
                format!("({col} IS NULL OR {col} NOT IN (SELECT value FROM json_each({operand})))")
            }
            Op::Matches => format!("{col} GLOB {operand}"),
            Op::Absent => format!("{col} IS NULL"),
            Op::Present => format!("{col} IS NOT NULL"),
            Op::Empty => format!("({col} IS NULL OR json_array_length({col}) = 0)"),
            Op::NotEmpty => format!("json_array_length({col}) > 0"),
            Op::Contains => {
                format!("EXISTS (SELECT 1 FROM json_each({col}) WHERE value = {operand})")
            }
            Op::OlderThan => format!("{col} < :now - {operand}"),
            Op::NewerThan => format!("{col} >= :now - {operand}"),
            Op::WithinNext => format!("{col} < :now + {operand}"),
        }
    }

    /// The operator names, comma-separated, for "did you mean" help.
    pub fn names() -> String {
        Op::ALL.map(Op::name).join(", ")
    }
}

impl FromStr for Op {
    type Err = UnknownOp;

    fn from_str(s: &str) -> Result<Op, UnknownOp> {
        Op::ALL
            .into_iter()
            .find(|op| op.name() == s)
            .ok_or_else(|| UnknownOp(s.to_owned()))
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a `matches` pattern cannot mean what it says. SQLite's `GLOB` never fails: a
/// pattern it cannot read simply matches nothing, so a typo would silently hide findings.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    /// A `[` set with no closing `]` (a `]` right after `[` or `[^` is a member, not the end).
    #[error("the `[` at character {0} is never closed by a `]`, so the pattern matches nothing")]
    Unclosed(usize),
    /// A range such as `[z-a]` whose ends are in the wrong order: SQLite reads its first
    /// end as a member and the range as empty.
    #[error("the range `{0}-{1}` runs backwards, so it matches only `{0}`")]
    BackwardRange(char, char),
}

/// Checks a pattern as SQLite's `GLOB` reads it (`*`, `?`, `[...]` sets with `^` and
/// ranges; no escapes), refusing what would make it match nothing by accident.
pub fn check_glob(pattern: &str) -> Result<(), GlobError> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '[' {
            i += 1;
            continue;
        }
        let open = i;
        i += 1;
        if chars.get(i) == Some(&'^') {
            i += 1;
        }
        if chars.get(i) == Some(&']') {
            i += 1;
        }
        // The character before a `-`, which makes it a range; a range's end starts afresh.
        let mut prior: Option<char> = None;
        loop {
            match (chars.get(i), prior) {
                (None, _) => return Err(GlobError::Unclosed(open + 1)),
                (Some(']'), _) => break,
                (Some('-'), Some(low)) if chars.get(i + 1).is_some_and(|c| *c != ']') => {
                    let high = chars[i + 1];
                    if high < low {
                        return Err(GlobError::BackwardRange(low, high));
                    }
                    prior = None;
                    i += 2;
                }
                (Some(c), _) => {
                    prior = Some(*c);
                    i += 1;
                }
            }
        }
        i += 1;
    }
    Ok(())
}

/// A name that is not an operator.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown operator `{0}`")]
pub struct UnknownOp(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    /// Each operator with the SQL it must compile to over `t."c"` with operand `:c1`, and
    /// its operand kind.
    const EXPECTED: [(Op, &str, OperandKind); 17] = [
        (Op::Eq, "t.\"c\" = :c1", OperandKind::Scalar),
        (Op::Ne, "t.\"c\" IS NOT :c1", OperandKind::Scalar),
        (Op::Lt, "t.\"c\" < :c1", OperandKind::Scalar),
        (Op::Le, "t.\"c\" <= :c1", OperandKind::Scalar),
        (Op::Gt, "t.\"c\" > :c1", OperandKind::Scalar),
        (Op::Ge, "t.\"c\" >= :c1", OperandKind::Scalar),
        (
            Op::In,
            "t.\"c\" IN (SELECT value FROM json_each(:c1))",
            OperandKind::List,
        ),
        (
            Op::NotIn,
            "(t.\"c\" IS NULL OR t.\"c\" NOT IN (SELECT value FROM json_each(:c1)))",
            OperandKind::List,
        ),
        (Op::Matches, "t.\"c\" GLOB :c1", OperandKind::Glob),
        (Op::Absent, "t.\"c\" IS NULL", OperandKind::None),
        (Op::Present, "t.\"c\" IS NOT NULL", OperandKind::None),
        (
            Op::Empty,
            "(t.\"c\" IS NULL OR json_array_length(t.\"c\") = 0)",
            OperandKind::None,
        ),
        (
            Op::NotEmpty,
            "json_array_length(t.\"c\") > 0",
            OperandKind::None,
        ),
        (
            Op::Contains,
            "EXISTS (SELECT 1 FROM json_each(t.\"c\") WHERE value = :c1)",
            OperandKind::Scalar,
        ),
        (Op::OlderThan, "t.\"c\" < :now - :c1", OperandKind::Age),
        (Op::NewerThan, "t.\"c\" >= :now - :c1", OperandKind::Age),
        (Op::WithinNext, "t.\"c\" < :now + :c1", OperandKind::Age),
    ];

    #[test]
    fn every_operator_compiles_to_its_sql_and_takes_its_operand_kind() {
        assert_eq!(EXPECTED.len(), Op::ALL.len());
        for ((op, sql, kind), listed) in EXPECTED.into_iter().zip(Op::ALL) {
            assert_eq!(op, listed, "Op::ALL is out of order");
            assert_eq!(op.sql("t.\"c\"", ":c1"), sql, "{op}");
            assert_eq!(op.operand(), kind, "{op}");
        }
    }

    #[test]
    fn operators_without_an_operand_do_not_reference_it() {
        for op in Op::ALL {
            let uses_operand = op.sql("t.\"c\"", ":c1").contains(":c1");
            assert_eq!(uses_operand, op.operand() != OperandKind::None, "{op}");
        }
    }

    #[test]
    fn globs_sqlite_cannot_match_are_refused_and_others_pass() {
        for ok in [
            "", "p*", "?x", "[a-z]*", "[^0-9]", "[]]", "[^]a]", "[a-]", "[-a]", "a]b", "[]-a]",
        ] {
            assert_eq!(check_glob(ok), Ok(()), "{ok}");
        }
        assert_eq!(check_glob("proj_[abc"), Err(GlobError::Unclosed(6)));
        assert_eq!(check_glob("["), Err(GlobError::Unclosed(1)));
        assert_eq!(check_glob("[]"), Err(GlobError::Unclosed(1)));
        assert_eq!(check_glob("[^]"), Err(GlobError::Unclosed(1)));
        assert_eq!(check_glob("x[a][b"), Err(GlobError::Unclosed(5)));
        assert_eq!(check_glob("[z-a]"), Err(GlobError::BackwardRange('z', 'a')));
    }

    /// What the checker accepts SQLite reads the same way: each accepted set matches the
    /// characters it names, and each refused pattern indeed matches nothing.
    #[test]
    fn check_glob_agrees_with_sqlite() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let glob = |text: &str, pattern: &str| -> bool {
            conn.query_row("SELECT ?1 GLOB ?2", [text, pattern], |r| r.get(0))
                .unwrap()
        };
        assert!(glob("]", "[]]") && glob("b", "[^]a]") && glob("-", "[a-]") && glob("-", "[]-a]"));
        assert!(!glob("b", "[]-a]"));
        for bad in ["proj_[abc", "[", "[]", "[^]"] {
            for text in ["", "[", "]", "proj_a", "proj_[abc", "^"] {
                assert!(!glob(text, bad), "{text:?} GLOB {bad:?}");
            }
        }
        assert!(!glob("m", "[z-a]") && !glob("a", "[z-a]") && glob("z", "[z-a]"));
    }

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for op in Op::ALL {
            assert_eq!(op.name().parse::<Op>(), Ok(op));
            assert!(!op.doc().is_empty(), "{op} has no doc line");
        }
        assert_eq!("like".parse::<Op>(), Err(UnknownOp("like".into())));
        assert_eq!("EQ".parse::<Op>(), Err(UnknownOp("EQ".into())));
    }

    /// The operator table of `rules/README.md` names every operator, and only operators.
    #[test]
    fn every_operator_is_documented_in_the_rules_readme() {
        let readme = include_str!("../../../rules/README.md");
        let table: Vec<&str> = readme
            .lines()
            .skip_while(|l| !l.starts_with("| op |"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .collect();
        assert!(!table.is_empty(), "no `| op |` table in rules/README.md");
        let documented: Vec<&str> = table
            .iter()
            .filter_map(|row| row.split('|').nth(1))
            .flat_map(|cell| cell.split('`').skip(1).step_by(2))
            .collect();
        for op in Op::ALL {
            assert!(
                documented.contains(&op.name()),
                "`{op}` is missing from the operator table of rules/README.md"
            );
        }
        for name in documented {
            assert!(
                name.parse::<Op>().is_ok(),
                "rules/README.md documents `{name}`, which is not an operator"
            );
        }
    }
}
