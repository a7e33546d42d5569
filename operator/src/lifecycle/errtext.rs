//! A runtime's error text made fit for one condition message: one line, the store's
//! `<Code>`/`<Message>` instead of its XML body, no URL query (presigned URLs carry
//! signatures), at most [`MAX_CHARS`] characters.

/// Longest condensed text, in characters.
pub const MAX_CHARS: usize = 300;

/// The text of the first `<tag>...</tag>` in `xml`.
fn tag<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&format!("</{name}>"))?;
    Some(xml[start..start + len].trim()).filter(|s| !s.is_empty())
}

/// Drops the query of every URL-like word (`...?X-Amz-Signature=...`).
fn without_queries(text: &str) -> String {
    text.split(' ')
        .map(|w| match w.find('?') {
            Some(i) if w.contains("://") => {
                // Keep the punctuation that ends the word (`...?sig=x:` -> `...:`).
                let end = w.trim_end_matches([':', ',', ';', ')']).len().max(i);
                format!("{}{}", &w[..i], &w[end..])
            }
            _ => w.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `text` cut to `max` characters, `…` last when cut.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// One line of at most [`MAX_CHARS`] characters from a runtime's error text.
/// The store's `<Code>` and `<Message>` are kept whole (up to half the limit):
/// when the line is too long its head is cut, since the head (which names the
/// location first) is what is left of an object's key and URL after the store
/// refused it, and the code says why.
pub fn condense(text: &str) -> String {
    let (head, xml) = match text.find('<') {
        Some(i) => (&text[..i], Some(&text[i..])),
        None => (text, None),
    };
    // Without XML the first line says it; with XML the lines before it lead to it.
    let head = if xml.is_none() {
        text.lines().find(|l| !l.trim().is_empty()).unwrap_or("")
    } else {
        head
    };
    let head = without_queries(one_line(head).trim_end_matches([':', ' ']));
    let store = xml
        .map(|xml| {
            let parts: Vec<&str> = [tag(xml, "Code"), tag(xml, "Message")]
                .into_iter()
                .flatten()
                .collect();
            without_queries(&one_line(&parts.join(": ")))
        })
        .filter(|s| !s.is_empty());
    match store {
        None => cut(&head, MAX_CHARS),
        Some(store) if head.is_empty() => cut(&store, MAX_CHARS),
        Some(store) => {
            let store = cut(&store, MAX_CHARS / 2);
            let room = MAX_CHARS - store.chars().count() - ": ".len();
            format!("{}: {store}", cut(&head, room))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_s3_error_body_becomes_its_code_and_message_on_one_line() {
        let text = "savepoint s3://missing/sp/sp-7: Generic S3 error: Error performing PUT \
            http://127.0.0.1:9000/missing/sp/sp-7/shard-0 in 3ms - Server returned non-success \
            status code: 404 Not Found: <?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>\
            <Code>NoSuchBucket</Code>\n<Message>The specified bucket does not exist</Message>\
            <BucketName>missing</BucketName><RequestId>17E</RequestId></Error>";
        let c = condense(text);
        assert!(!c.contains('\n') && !c.contains('<'), "{c}");
        assert!(
            c.starts_with("savepoint s3://missing/sp/sp-7: Generic S3 error"),
            "{c}"
        );
        assert!(
            c.ends_with("404 Not Found: NoSuchBucket: The specified bucket does not exist"),
            "{c}"
        );
    }

    #[test]
    fn a_long_head_is_cut_and_the_stores_code_and_message_are_kept() {
        // As object_store words a PUT into a missing bucket: the key and the
        // URL alone take more than the limit.
        let key = "impressions-plays/sp-2-1796551763-manual/shard-0/db/000004.log";
        let text = format!(
            "savepoint s3://sj-missing-21911-ac4af6de/impressions-plays/sp-2-1796551763-manual: \
             Object at location {key} not found: Error performing PUT \
             http://127.0.0.1:57979/sj-missing-21911-ac4af6de/{key} in 3ms - Server returned \
             non-success status code: 404 Not Found: <?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist\
             </Message><BucketName>sj-missing-21911-ac4af6de</BucketName></Error>"
        );
        let c = condense(&text);
        assert!(c.chars().count() <= MAX_CHARS, "{c}");
        assert!(
            c.starts_with(
                "savepoint s3://sj-missing-21911-ac4af6de/impressions-plays/sp-2-1796551763-manual: "
            ),
            "{c}"
        );
        assert!(
            c.ends_with("…: NoSuchBucket: The specified bucket does not exist"),
            "{c}"
        );
        let long_message = format!("<Code>X</Code><Message>{}</Message>", "m".repeat(400));
        let c = condense(&format!("head: {long_message}"));
        assert_eq!(c.chars().count(), "head: ".len() + MAX_CHARS / 2, "{c}");
        assert!(c.starts_with("head: X: mmm") && c.ends_with('…'), "{c}");
    }

    #[test]
    fn plain_text_keeps_its_first_line() {
        assert_eq!(
            condense("\n  connection refused (os error 111)\n  at retry 3\n"),
            "connection refused (os error 111)"
        );
        assert_eq!(condense("disk full"), "disk full");
    }

    #[test]
    fn long_text_is_cut_at_the_limit() {
        let c = condense(&"x".repeat(1000));
        assert_eq!(c.chars().count(), MAX_CHARS);
        assert!(c.ends_with('…'));
        let multibyte = condense(&"é".repeat(400));
        assert_eq!(multibyte.chars().count(), MAX_CHARS);
    }

    #[test]
    fn signed_url_queries_are_dropped() {
        let c = condense(
            "GET https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIAEXAMPLE&X-Amz-Signature=abc: 403",
        );
        assert_eq!(c, "GET https://b.s3.amazonaws.com/k: 403");
        assert!(!c.contains("AKIA") && !c.contains("Signature"));
    }
}
