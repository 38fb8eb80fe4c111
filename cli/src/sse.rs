//! A small Server-Sent Events parser for `GET /v1/events`: bytes in, messages out.
//!
//! It follows the WHATWG event-stream rules the API uses: lines end in `\n` or `\r\n`; a line
//! `field: value` sets `event`, appends to `data` (several `data` lines are joined with `\n`) or
//! sets `id`; a line starting with `:` is a comment (the keep-alive); an empty line ends a message,
//! which is dispatched only if it has data. A line longer than [`MAX_LINE`] is an error rather than
//! an unbounded buffer.

/// The longest line accepted (an event is one listing: far below this).
pub const MAX_LINE: usize = 1024 * 1024;

/// One event of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseMessage {
    /// The `event:` field, or `message` when there was none.
    pub event: String,
    pub data: String,
    pub id: Option<String>,
}

/// The stream sent a line longer than [`MAX_LINE`].
#[derive(Debug, thiserror::Error)]
#[error("the event stream sent a line longer than {MAX_LINE} bytes")]
pub struct LineTooLong;

/// Incremental parser state.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    event: Option<String>,
    data: Option<String>,
    id: Option<String>,
}

impl SseParser {
    pub fn new() -> Self {
        SseParser::default()
    }

    /// Feeds bytes; returns the messages they completed.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseMessage>, LineTooLong> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(pos) = self.buf[start..].iter().position(|&b| b == b'\n') {
            let end = start + pos;
            let mut line = &self.buf[start..end];
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            let line = String::from_utf8_lossy(line).into_owned();
            start = end + 1;
            if let Some(m) = self.line(&line) {
                out.push(m);
            }
        }
        self.buf.drain(..start);
        if self.buf.len() > MAX_LINE {
            return Err(LineTooLong);
        }
        Ok(out)
    }

    fn line(&mut self, line: &str) -> Option<SseMessage> {
        if line.is_empty() {
            let event = self.event.take();
            let id = self.id.take();
            let data = self.data.take()?;
            return Some(SseMessage { event: event.unwrap_or_else(|| "message".to_owned()), data, id });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            "id" => self.id = Some(value.to_owned()),
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_across_chunks() {
        let mut p = SseParser::new();
        let stream = b": keep-alive\n\nevent: listing_new\nid: 7\ndata: {\"a\":\ndata: 1}\r\n\r\nevent: lagged\ndata: {\"missed\": 2}\n\n";
        let mut got = Vec::new();
        for chunk in stream.chunks(5) {
            got.extend(p.push(chunk).unwrap());
        }
        assert_eq!(
            got,
            vec![
                SseMessage { event: "listing_new".into(), data: "{\"a\":\n1}".into(), id: Some("7".into()) },
                SseMessage { event: "lagged".into(), data: "{\"missed\": 2}".into(), id: None },
            ]
        );
    }

    #[test]
    fn no_data_no_message_and_long_lines_fail() {
        let mut p = SseParser::new();
        assert!(
            p.push(b"event: x\n\ndata\n\n").unwrap()
                == vec![SseMessage { event: "message".into(), data: String::new(), id: None }]
        );
        let mut p = SseParser::new();
        assert!(p.push(&vec![b'a'; MAX_LINE + 1]).is_err());
    }
}
