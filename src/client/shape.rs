//! How many JSON values an answer holds and how deep they nest, counted in one pass over
//! its bytes before it is parsed: a parsed value costs far more than its text (each is a
//! 72-byte `serde_json::Value`, so a `0,` of two bytes costs 36 times its size), and
//! `[openai] max_response_bytes` alone let one answer of 32 MiB of dense JSON cost 1.2 GB
//! parsed, and a crawl of such answers ten. An answer holding more values than any real
//! answer of its read can hold is refused unparsed (see [`AnswerBound`]).

/// What [`shape`] found: the values an answer holds and how deep its containers nest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Shape {
    /// Every object, array, string, number, `true`, `false` and `null`; an object's keys
    /// are not values.
    pub(crate) values: usize,
    /// The most objects and arrays open at once (`{}` is 1, `{"a":[]}` 2).
    pub(crate) depth: usize,
}

/// Counts the values of `body` and how deep they nest, without building any of them.
///
/// It does not check that `body` is JSON: text that is not is counted as far as it goes
/// (a bare word is one value, an unclosed string ends the count), and the parse that
/// follows says what is wrong with it. A string's contents are skipped whole, escapes
/// included (`"a\"[,{"` is one value), so brackets and commas inside strings count for
/// nothing.
pub(crate) fn shape(body: &[u8]) -> Shape {
    let mut strings = 0usize;
    let mut keys = 0usize;
    let mut containers = 0usize;
    let mut scalars = 0usize;
    let mut open = 0usize;
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(&byte) = body.get(i) {
        match byte {
            b'"' => {
                strings += 1;
                i = string_end(body, i + 1);
                continue;
            }
            b'{' | b'[' => {
                containers += 1;
                open += 1;
                depth = depth.max(open);
            }
            b'}' | b']' => open = open.saturating_sub(1),
            // Every key is followed by a colon, and nothing else is.
            b':' => keys += 1,
            b',' | b' ' | b'\t' | b'\n' | b'\r' => {}
            // A number, `true`, `false` or `null` (or a word that is none of them): one
            // value, up to the next byte that ends a token.
            _ => {
                scalars += 1;
                i += 1;
                while let Some(&b) = body.get(i) {
                    if matches!(
                        b,
                        b'"' | b'{'
                            | b'['
                            | b'}'
                            | b']'
                            | b':'
                            | b','
                            | b' '
                            | b'\t'
                            | b'\n'
                            | b'\r'
                    ) {
                        break;
                    }
                    i += 1;
                }
                continue;
            }
        }
        i += 1;
    }
    Shape {
        values: (strings + containers + scalars).saturating_sub(keys),
        depth,
    }
}

/// The index just past the string whose contents start at `from` (after its opening
/// quote): past its closing quote, or `body.len()` for a string that never closes. A
/// backslash escapes the byte after it, so `\"` and `\\` never end or start anything.
fn string_end(body: &[u8], from: usize) -> usize {
    let mut i = from;
    while let Some(at) = body
        .get(i..)
        .and_then(|rest| rest.iter().position(|b| *b == b'"' || *b == b'\\'))
    {
        i += at;
        if body[i] == b'"' {
            return i + 1;
        }
        // A backslash: the byte it escapes is skipped whatever it is.
        i += 2;
    }
    body.len()
}

/// The most JSON values one answer of a read may hold, and the deepest it may nest, with
/// what the read is, to say why an answer over them was refused.
///
/// The bounds come from what the API can send, not from the bytes: a page holds at most
/// the `limit` asked (100 objects, 1,000 for the role and group lists), and the Admin
/// API's largest objects (a role with its permission list, an audit-log event with its
/// details, a project with its rate limits) hold a few hundred values at most. In the
/// simulator the largest object holds 20 (an organization user), the largest audit-log
/// event 19, and the largest page 2,006 (100 organization users). [`VALUES_PER_OBJECT`]
/// allows each object a thousand, so a real page stays far below its bound (50 times
/// for the simulator's), while an answer of dense JSON is refused at a page's worth of
/// values: 101,000 for a page of 100 (200 KB of `0,`, 7 MB parsed) and 1,001,000 for a
/// page of 1,000 (2 MB, 72 MB parsed), instead of at 32 MiB of it (16.7 million values,
/// 1.2 GB parsed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnswerBound {
    /// A page of a list of at most `objects` objects; `of` names the list in the message
    /// ("this list", "the audit log").
    Page {
        /// The `limit` the request asked for.
        objects: u32,
        /// The list, for the message.
        of: &'static str,
    },
    /// A read of one object (a project's data retention, its model permissions).
    Object,
    /// A page of the organization's costs: a bucket per day asked, each with a result
    /// per project and line item, so no page size bounds it, and a real page can come
    /// near `max_response_bytes` (a week of 1,000 projects with 20 line items is about
    /// 28 MB). A result is ten values in about 200 bytes (its keys alone are 90): the
    /// simulator's week of 1,000 projects is 198,490 values in 4.2 MB, 21 bytes a value.
    /// One value per [`COSTS_BYTES_PER_VALUE`] bytes of `max_response_bytes` (4,194,304 at
    /// 32 MiB) is twice what the largest real page holds, while JSON of two or three bytes
    /// a value (a long array of zeros or of `{}`) is refused at an eighth of the limit:
    /// at most 300 MB parsed, one costs page at a time, about what the largest real page
    /// costs, where 32 MiB of it cost 1.2 GB.
    Costs,
}

/// The values each object of a page is allowed (see [`AnswerBound`]).
pub const VALUES_PER_OBJECT: usize = 1_000;

/// Values allowed beside a page's objects: its envelope (`object`, `data`, `has_more`,
/// `first_id`, `last_id`, `next`), with room for fields the API may add.
const ENVELOPE_VALUES: usize = 1_000;

/// A read of one object is allowed as many values as a page of 100 (see [`AnswerBound`]):
/// a project's model permissions list models, which are hundreds at most.
const OBJECT_VALUES: usize = 100 * VALUES_PER_OBJECT + ENVELOPE_VALUES;

/// Bytes of `max_response_bytes` per value a costs page is allowed (see
/// [`AnswerBound::Costs`]).
pub const COSTS_BYTES_PER_VALUE: u64 = 8;

/// The deepest nesting any answer may have. The Admin API's deepest are six levels: a
/// page of costs (page, buckets, bucket, results, result, amount) and a page of audit-log
/// events whose details hold a list of objects; 64 is ten times that and half of what the
/// parser itself allows (128), so a deep answer is refused by what it is rather than by
/// the parser's recursion limit.
pub const MAX_DEPTH: usize = 64;

impl AnswerBound {
    /// The most values an answer may hold, `max_response_bytes` being the largest answer
    /// read.
    pub fn most_values(self, max_response_bytes: u64) -> usize {
        match self {
            AnswerBound::Page { objects, .. } => usize::try_from(objects)
                .unwrap_or(usize::MAX)
                .saturating_mul(VALUES_PER_OBJECT)
                .saturating_add(ENVELOPE_VALUES),
            AnswerBound::Object => OBJECT_VALUES,
            AnswerBound::Costs => {
                usize::try_from(max_response_bytes / COSTS_BYTES_PER_VALUE).unwrap_or(usize::MAX)
            }
        }
    }

    /// Why the answer `found` is refused, `None` when it is within the bounds: its values
    /// and depth, and the most a real answer of this read can have, in words.
    pub(crate) fn refuse(self, found: Shape, max_response_bytes: u64) -> Option<String> {
        let most = self.most_values(max_response_bytes);
        if found.values > most {
            let what = match self {
                AnswerBound::Page { objects, of } => format!(
                    "more than any page of {of} can hold (at most {}: {} objects of up to {} \
                     values each, asked with `limit={objects}`)",
                    thousands(most),
                    thousands(objects as usize),
                    thousands(VALUES_PER_OBJECT),
                ),
                AnswerBound::Object => format!(
                    "more than any single object of this read can hold (at most {})",
                    thousands(most)
                ),
                AnswerBound::Costs => format!(
                    "more than a page of costs can hold (at most {}, one value per \
                     {COSTS_BYTES_PER_VALUE} bytes of `[openai] max_response_bytes`, where \
                     real costs spend about 20 bytes a value)",
                    thousands(most)
                ),
            };
            return Some(format!(
                "the answer holds {} JSON values, {what}; refused without parsing it: \
                 parsed, it would take at least {} MB of memory",
                thousands(found.values),
                found
                    .values
                    .saturating_mul(std::mem::size_of::<serde_json::Value>())
                    / 1_000_000,
            ));
        }
        if found.depth > MAX_DEPTH {
            return Some(format!(
                "the answer nests {} levels deep, more than any answer of the Admin API \
                 (at most {MAX_DEPTH}); refused without parsing it",
                thousands(found.depth)
            ));
        }
        None
    }
}

/// `n` with thousands separated by commas (`16,777,216`).
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(text: &str) -> usize {
        shape(text.as_bytes()).values
    }

    fn depth(text: &str) -> usize {
        shape(text.as_bytes()).depth
    }

    /// The values of a parsed `Value`, counted the way [`shape`] counts them.
    fn parsed_values(v: &serde_json::Value) -> usize {
        match v {
            serde_json::Value::Array(a) => 1 + a.iter().map(parsed_values).sum::<usize>(),
            serde_json::Value::Object(o) => 1 + o.values().map(parsed_values).sum::<usize>(),
            _ => 1,
        }
    }

    #[test]
    fn every_kind_of_value_counts_once_and_keys_not_at_all() {
        assert_eq!(values(""), 0);
        assert_eq!(values("0"), 1);
        assert_eq!(values("[]"), 1);
        assert_eq!(values("{}"), 1);
        assert_eq!(values(r#""""#), 1);
        assert_eq!(values("[0,0,0]"), 4);
        assert_eq!(values("[{},{},{}]"), 4);
        assert_eq!(values(r#"{"a":1,"b":"x","c":null,"d":true,"e":false}"#), 6);
        assert_eq!(values(r#"[-1.5e+3, 2E-7 ,0.25]"#), 4);
        let page = r#"{"object":"list","data":[{"id":"p1","x":[0,0,0]}],"has_more":false}"#;
        assert_eq!(values(page), 10);
        assert_eq!(
            values(page),
            parsed_values(&serde_json::from_str(page).unwrap())
        );
        // Whitespace anywhere changes nothing.
        let spaced = "{ \"a\" :\t[ 1 ,\r\n 2 ] , \"b\" : { } }";
        assert_eq!(values(spaced), 5);
        assert_eq!(depth(spaced), 2);
    }

    #[test]
    fn brackets_commas_colons_and_escaped_quotes_inside_strings_count_for_nothing() {
        assert_eq!(values(r#""[[[{{{,,,:::]]]""#), 1);
        assert_eq!(depth(r#""[[[{{{""#), 0);
        // An escaped quote does not end the string; an escaped backslash before a quote
        // does not escape the quote.
        assert_eq!(values(r#"["a\"b,c\"[d", "e\\", "f"]"#), 4);
        assert_eq!(values(r#"{"k\":[1,2]":"v\\","k2":"\\\"]}"}"#), 3);
        assert_eq!(values(r#"["\u005b\u002c", "\/\b\f\n\r\t"]"#), 3);
        // A key with brackets in it is still one key.
        assert_eq!(values(r#"{"{[:,]}":0}"#), 2);
        // Multi-byte UTF-8 is skipped like any other string byte.
        assert_eq!(values(r#"["é,[ü]", "日本,語"]"#), 3);
        for text in [
            r#"{"a\"":["\\",{"\\\\":"]"}],"b":"\"{"}"#,
            r#"[{"":""},"",[""],"\"\"\"",["[","]"]]"#,
        ] {
            assert_eq!(
                values(text),
                parsed_values(&serde_json::from_str(text).unwrap()),
                "{text}"
            );
        }
    }

    #[test]
    fn text_that_is_not_json_is_counted_without_panicking() {
        // An unclosed string runs to the end; an escape at the very end is no overrun.
        assert_eq!(values(r#"["abc"#), 2);
        assert_eq!(values(r#"["abc\"#), 2);
        assert_eq!(values("\"\\"), 1);
        assert_eq!(depth("[[[[["), 5);
        // Closers without openers do not go below zero.
        assert_eq!(shape(b"]]]}}[").depth, 1);
        // Keys without values never make the count negative.
        assert_eq!(values(":::::"), 0);
        assert_eq!(values("nul tru 12ab"), 3);
        assert_eq!(shape(&[0xff, 0xfe, b'[', 0x80]).values, 3);
    }

    #[test]
    fn nesting_is_counted_to_its_deepest_point() {
        assert_eq!(depth("0"), 0);
        assert_eq!(depth("[]"), 1);
        assert_eq!(depth(r#"{"a":[{"b":[]}],"c":{}}"#), 4);
        // Deep then shallow: the deepest point is what counts.
        let deep = format!("[{}{}, 0]", "[".repeat(200), "]".repeat(200));
        assert_eq!(depth(&deep), 201);
        assert_eq!(values(&deep), 202);
    }

    #[test]
    fn an_answer_at_its_bound_passes_and_one_value_more_is_refused() {
        let page = AnswerBound::Page {
            objects: 100,
            of: "this list",
        };
        let most = page.most_values(32 << 20);
        assert_eq!(most, 101_000);
        // `[0,…]` holds its zeros and the array itself.
        let answer = |values: usize| format!("[{}]", vec!["0"; values - 1].join(","));
        assert_eq!(values(&answer(most)), most);
        assert_eq!(page.refuse(shape(answer(most).as_bytes()), 32 << 20), None);
        let over = page
            .refuse(shape(answer(most + 1).as_bytes()), 32 << 20)
            .expect("refused");
        assert!(
            over.starts_with(
                "the answer holds 101,001 JSON values, more than any page of this list can \
                 hold (at most 101,000: 100 objects of up to 1,000 values each, asked with \
                 `limit=100`)"
            ),
            "{over}"
        );
        // Depth: at the bound passes, one level more is refused.
        let nested = |levels: usize| format!("{}{}", "[".repeat(levels), "]".repeat(levels));
        assert_eq!(page.refuse(shape(nested(MAX_DEPTH).as_bytes()), 0), None);
        let deep = page
            .refuse(shape(nested(MAX_DEPTH + 1).as_bytes()), 0)
            .expect("refused");
        assert!(deep.contains("65 levels deep"), "{deep}");
    }

    #[test]
    fn each_read_has_the_bound_its_answers_call_for() {
        let page = |objects| AnswerBound::Page {
            objects,
            of: "this list",
        };
        assert_eq!(page(1000).most_values(0), 1_001_000);
        assert_eq!(AnswerBound::Object.most_values(0), 101_000);
        // Costs scale with the bytes an answer may have.
        assert_eq!(AnswerBound::Costs.most_values(32 << 20), 4 << 20);
        assert_eq!(AnswerBound::Costs.most_values(1 << 20), 128 << 10);
        let costs = AnswerBound::Costs
            .refuse(
                Shape {
                    values: 5_000_000,
                    depth: 4,
                },
                32 << 20,
            )
            .expect("refused");
        assert!(
            costs.contains("5,000,000 JSON values, more than a page of costs can hold"),
            "{costs}"
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;
        use serde_json::Value;

        /// Any JSON, strings and keys drawn from every character (quotes, backslashes,
        /// brackets and control characters included, which the writer escapes).
        fn json() -> impl Strategy<Value = Value> {
            let text = r#"[\PC"\\\[\]{}:,\x00-\x1f]{0,10}"#;
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                any::<f64>().prop_map(Value::from),
                text.prop_map(Value::String),
            ];
            leaf.prop_recursive(6, 64, 6, move |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                    prop::collection::btree_map(text, inner, 0..6)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        /// How deep a parsed value's containers nest.
        fn parsed_depth(v: &Value) -> usize {
            match v {
                Value::Array(a) => 1 + a.iter().map(parsed_depth).max().unwrap_or(0),
                Value::Object(o) => 1 + o.values().map(parsed_depth).max().unwrap_or(0),
                _ => 0,
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// Compact or pretty, the count is exactly the parsed value's.
            #[test]
            fn any_json_is_counted_as_its_parse_counts_it(value in json()) {
                let expected = Shape {
                    values: parsed_values(&value),
                    depth: parsed_depth(&value),
                };
                prop_assert_eq!(shape(&serde_json::to_vec(&value).unwrap()), expected);
                prop_assert_eq!(shape(&serde_json::to_vec_pretty(&value).unwrap()), expected);
            }

            /// Any bytes are counted without panicking.
            #[test]
            fn any_bytes_are_counted_without_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
                let found = shape(&bytes);
                prop_assert!(found.values <= bytes.len());
                prop_assert!(found.depth <= bytes.len());
            }
        }
    }

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(16_777_216), "16,777,216");
    }
}
