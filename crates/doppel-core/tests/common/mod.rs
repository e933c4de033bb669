//! What several test files share.

#![allow(dead_code)] // Each test file uses its own share of these.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use doppel_core::{DEFAULT_TWIN, Doppel, MODEL_CACHE_ENV, ModelFiles, TextRequest};
use serde_json::Value;

/// Every file below `dir`. A folder that vanishes while it is listed (the app runs beside the
/// scan) is passed over: it holds nothing any more.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return out,
        Err(e) => panic!("{}: {e}", dir.display()),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() { out.extend(walk(&path)) } else { out.push(path) }
    }
    out
}

/// Every file below `dir` (recursively) that holds one of `needles`, as "what in path". Safe to
/// run while the app works: a file removed between the listing and its reading (an index file
/// replaced by its next save) holds nothing, and one created meanwhile is read by the next scan.
pub fn files_holding(dir: &Path, needles: &[(&str, &[u8])]) -> Vec<String> {
    let mut found = Vec::new();
    for file in walk(dir) {
        let bytes = match std::fs::read(&file) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("{}: {e}", file.display()),
        };
        for (what, needle) in needles {
            if bytes.windows(needle.len()).any(|w| w == *needle) {
                found.push(format!("{what} in {}", file.display()));
            }
        }
    }
    found
}

/// The model cache that `scripts/test` fills (`DOPPEL_MODEL_CACHE`), checked to hold the model.
pub fn model_cache() -> PathBuf {
    let dir = std::env::var_os(MODEL_CACHE_ENV)
        .map(PathBuf::from)
        .expect("DOPPEL_MODEL_CACHE is set by scripts/test");
    assert!(
        ModelFiles::in_cache(&dir).model.is_file(),
        "run scripts/models to fill {}",
        dir.display()
    );
    dir
}

/// One HTTP request as a loopback model server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub authorization: Option<String>,
    /// The body as JSON (`Null` when it is not JSON, as a multipart form is not).
    pub body: Value,
    /// The body as sent.
    pub raw: Vec<u8>,
}

/// Reads one request with a JSON body from `stream`.
pub fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_string();
    let (mut length, mut authorization) = (0, None);
    loop {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().ok()?,
            "authorization" => authorization = Some(value.trim().to_string()),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Some(Request { path, authorization, body: json, raw: body })
}

/// What a scripted loopback server does with a request: answer with a status and a JSON body,
/// never answer, or answer one byte at a time.
pub enum Answer {
    Json(u16, Value),
    /// Holds the connection open and silent well past any timeout under test.
    Hang,
    /// A 200 whose JSON body comes one byte at a time, each 0.8 s after the last: just inside
    /// a 1 s read timeout, so only a deadline on the whole body stops it.
    Trickle(Value),
}

/// A scripted server's behaviour.
pub type Handler = Arc<dyn Fn(&Request) -> Answer + Send + Sync>;

/// Serves `handler` on a loopback port until the test process ends; returns the base URL and
/// the requests seen.
pub fn serve(handler: Handler) -> (String, Arc<Mutex<Vec<Request>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (handler, log) = (Arc::clone(&handler), Arc::clone(&log));
            std::thread::spawn(move || {
                let Some(request) = read_request(&stream) else { return };
                log.lock().unwrap().push(request.clone());
                match handler(&request) {
                    Answer::Json(status, body) => respond(stream, status, &body),
                    // The server's behaviour, not a wait of the test.
                    Answer::Hang => std::thread::sleep(Duration::from_secs(30)),
                    Answer::Trickle(body) => trickle(stream, &body),
                }
            });
        }
    });
    (base, seen)
}

fn respond(mut stream: TcpStream, status: u16, body: &Value) {
    let body = body.to_string();
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body.as_bytes());
}

fn trickle(mut stream: TcpStream, body: &Value) {
    let body = body.to_string();
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    for byte in body.as_bytes() {
        // The server's pace, not a wait of the test: each byte comes 0.8 s after the last.
        std::thread::sleep(Duration::from_millis(800));
        if stream.write_all(&[*byte]).and_then(|()| stream.flush()).is_err() {
            return;
        }
    }
}

/// Teaches the twin of `doppel` one note of the garden, and waits until it is learnt.
pub fn learn_garden_note(doppel: &Doppel) {
    let queued = doppel
        .add_text(TextRequest {
            twin: DEFAULT_TWIN,
            title: "Garden notes".into(),
            text: "The tomatoes went in during May, after the last frost.".into(),
        })
        .unwrap();
    doppel.wait_for(&[queued.job_id], |_| {}).unwrap();
}

/// The name of the threads of [`endless_chat_server`], so that a count of threads can leave
/// them out.
pub const LOOPBACK_CHAT_THREAD: &str = "loopback-chat";

/// An OpenAI-compatible server that streams one piece after another until the client leaves.
pub fn endless_chat_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let accept = move || {
        for mut stream in listener.incoming().flatten() {
            let serve = move || {
                if read_request(&stream).is_none() {
                    return;
                }
                let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";
                if stream.write_all(head.as_bytes()).is_err() {
                    return;
                }
                // Pieces that never repeat (a loop would be stopped as one), at the server's
                // pace, not a wait of the test: one every 2 ms until the client closes.
                for n in 0u64.. {
                    let words = format!("The tomatoes went in during May, note {n}. ");
                    let piece =
                        serde_json::json!({"choices": [{"index": 0, "delta": {"content": words}}]});
                    if stream.write_all(format!("data: {piece}\n\n").as_bytes()).is_err()
                        || stream.flush().is_err()
                    {
                        return;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
            };
            std::thread::Builder::new().name(LOOPBACK_CHAT_THREAD.into()).spawn(serve).unwrap();
        }
    };
    std::thread::Builder::new().name(LOOPBACK_CHAT_THREAD.into()).spawn(accept).unwrap();
    base
}

/// A scanned PDF: one page per JPEG (grey or colour), each page as large as its image at `dpi`, with
/// no text layer at all (what a scanner's "save as PDF" writes).
pub fn scan_pdf(jpegs: &[Vec<u8>], dpi: f32) -> Vec<u8> {
    let pages: Vec<PdfPage> = jpegs.iter().map(|j| PdfPage::Scan(j.clone())).collect();
    pdf_of(&pages, dpi)
}

/// A page of a PDF made by [`pdf_of`].
pub enum PdfPage {
    /// A scanned image (a JPEG), without text.
    Scan(Vec<u8>),
    /// A line of typed text (Helvetica), with a text layer.
    Text(&'static str),
}

/// A PDF of scanned and typed pages, as a scanner's software or a merge of files writes.
pub fn pdf_of(pages: &[PdfPage], dpi: f32) -> Vec<u8> {
    use lopdf::{Document, Object, Stream, dictionary};
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font = doc.add_object(dictionary! {
        "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica",
    });
    let mut kids: Vec<Object> = Vec::new();
    for page in pages {
        let jpeg = match page {
            PdfPage::Scan(jpeg) => jpeg,
            PdfPage::Text(line) => {
                let content = format!("BT /F1 14 Tf 72 720 Td ({line}) Tj ET");
                let content_id = doc.add_object(Stream::new(dictionary! {}, content.into_bytes()));
                let page = dictionary! {
                    "Type" => "Page", "Parent" => pages_id,
                    "MediaBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
                    "Contents" => content_id,
                    "Resources" => dictionary! { "Font" => dictionary! { "F1" => font } },
                };
                kids.push(doc.add_object(page).into());
                continue;
            }
        };
        let size = imagesize::blob_size(jpeg).expect("a JPEG");
        let image = Stream::new(
            dictionary! {
                "Type" => "XObject", "Subtype" => "Image",
                "Width" => size.width as i64, "Height" => size.height as i64,
                "ColorSpace" => colour_space(jpeg), "BitsPerComponent" => 8, "Filter" => "DCTDecode",
            },
            jpeg.clone(),
        );
        let image_id = doc.add_object(image);
        let (w, h) = (size.width as f32 * 72.0 / dpi, size.height as f32 * 72.0 / dpi);
        let content = format!("q {w} 0 0 {h} 0 0 cm /Im0 Do Q");
        let content_id = doc.add_object(Stream::new(dictionary! {}, content.into_bytes()));
        let page = dictionary! {
            "Type" => "Page", "Parent" => pages_id,
            "MediaBox" => vec![0.into(), 0.into(), w.into(), h.into()],
            "Contents" => content_id,
            "Resources" => dictionary! { "XObject" => dictionary! { "Im0" => image_id } },
        };
        kids.push(doc.add_object(page).into());
    }
    let count = kids.len() as i64;
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! { "Type" => "Pages", "Kids" => kids, "Count" => count }),
    );
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog);
    let mut out = Vec::new();
    doc.save_to(&mut out).expect("a PDF in memory");
    out
}

/// A JPEG's colour space in PDF's words, from the component count of its frame header.
fn colour_space(jpeg: &[u8]) -> &'static str {
    let frame = jpeg.windows(2).position(|w| w[0] == 0xFF && (0xC0..=0xC2).contains(&w[1]));
    match frame.and_then(|i| jpeg.get(i + 9)) {
        Some(1) => "DeviceGray",
        _ => "DeviceRGB",
    }
}

/// Runs a program of the machine (poppler, ImageMagick) and returns its stdout.
pub fn run_tool(program: &str, args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (scripts/setup installs it)"));
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// One page of a PDF rendered as a greyscale image (`-png` or `-jpeg`) at `dpi`.
pub fn render_page(pdf: &Path, page: u32, dpi: u32, kind: &str) -> Vec<u8> {
    let (page, dpi) = (page.to_string(), dpi.to_string());
    let pdf = pdf.to_str().unwrap();
    run_tool("pdftoppm", &["-r", &dpi, "-f", &page, "-l", &page, "-gray", kind, pdf])
}
