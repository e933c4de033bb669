//! Hard formats through the real `doppel` binary, whose own hidden parser mode is the sandbox:
//! real PDFs with their page numbers, and a corpus of hostile files that fail alone while the
//! good files of the same batch succeed.

mod util;

use std::io::Write;

use serde_json::Value;
use util::Cli;

const MIME_SPEC: &str = "/usr/share/doc/shared-mime-info/shared-mime-info-spec.pdf";
const TASN1: &str = "/usr/share/doc/libtasn1-doc/libtasn1.pdf";

fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in entries {
        out.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
        out.write_all(data).unwrap();
    }
    out.finish().unwrap().into_inner()
}

fn page_of(cli: &Cli, query: &str, origin_end: &str) -> Option<u64> {
    let hits = cli.json(&["search", query, "-k", "3", "--mode", "keyword"]);
    let hit = hits["hits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["origin"].as_str().unwrap().ends_with(origin_end))?
        .clone();
    hit["location"]["page"].as_u64()
}

#[test]
fn real_pdfs_are_found_at_the_right_page() {
    for pdf in [MIME_SPEC, TASN1] {
        assert!(std::path::Path::new(pdf).exists(), "{pdf} is missing: scripts/setup installs it");
    }
    let cli = Cli::new();
    let report = cli.json(&["ingest", MIME_SPEC, TASN1]);
    let jobs = report["jobs"].as_array().unwrap();
    assert!(jobs.iter().all(|j| j["state"] == "done"), "{report}");
    let mime = cli.source_by_origin(std::path::Path::new(MIME_SPEC)).unwrap();
    assert_eq!(mime["media_type"], "application/pdf");
    assert_eq!(mime["title"], "shared-mime-info-spec.pdf");

    assert_eq!(
        page_of(&cli, "subclass of another type if any instance", "shared-mime-info-spec.pdf"),
        Some(14)
    );
    assert_eq!(
        page_of(
            &cli,
            "globs2 file lists weight MIME type and pattern",
            "shared-mime-info-spec.pdf"
        ),
        Some(7)
    );
    assert_eq!(page_of(&cli, "C-style comments are not supported", "libtasn1.pdf"), Some(5));
    let shown = cli.json(&["show", MIME_SPEC]);
    let pages: Vec<u64> = shown["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["location"]["page"].as_u64())
        .collect();
    assert_eq!(pages.first(), Some(&1));
    assert_eq!(pages.last(), Some(&17));
    assert!(pages.windows(2).all(|w| w[0] <= w[1]), "pages out of order: {pages:?}");
}

#[test]
fn hostile_documents_fail_alone_with_clear_reasons() {
    let cli = Cli::new();
    let real = std::fs::read(MIME_SPEC).unwrap();
    cli.write("in/truncated.pdf", &real[..real.len() / 2]);
    cli.write(
        "in/binary.pdf",
        (0..8192u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect::<Vec<_>>(),
    );
    cli.write("in/loop.pdf", LOOPING_PDF);
    cli.write("in/bomb.pdf", stream_bomb_pdf(512 * 1024 * 1024));
    let zeros = vec![b'0'; 300 * 1024 * 1024];
    cli.write("in/bomb.docx", zip_of(&[("word/document.xml", &zeros)]));
    drop(zeros);
    let mut mbox = std::fs::File::create(cli.file("in/huge.mbox")).unwrap();
    mbox.write_all(b"From a@b Mon Jan  1 00:00:00 2024\nSubject: big\n\n").unwrap();
    let line = [b'x'; 1023].iter().chain(b"\n").copied().collect::<Vec<u8>>();
    for _ in 0..60 * 1024 {
        mbox.write_all(&line).unwrap();
    }
    drop(mbox);
    let good = cli.write("in/good.docx", zip_of(&[("word/document.xml", GOOD_DOCX.as_bytes())]));
    // A page that claims two megabytes as its title.
    let titled = cli.write(
        "in/titled.html",
        format!("<title>{}</title><p>The lynx hunts at night.</p>", "Lynx é ".repeat(300_000)),
    );

    cli.json(&["settings", "set", "parse_memory_mb", "256"]);
    let report = cli.json_status(&["ingest", cli.file("in").to_str().unwrap()], 2);
    let by_name = |name: &str| -> Value {
        report["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["origin"].as_str().unwrap().ends_with(name))
            .unwrap()
            .clone()
    };
    let reason = |name: &str| by_name(name)["error"]["message"].as_str().unwrap_or("").to_string();
    assert!(
        reason("truncated.pdf").starts_with("file is malformed"),
        "{}",
        reason("truncated.pdf")
    );
    assert!(reason("binary.pdf").starts_with("file is malformed"), "{}", reason("binary.pdf"));
    assert_eq!(reason("loop.pdf"), "file is malformed: the PDF has no pages");
    assert_eq!(reason("bomb.pdf"), "parser ran out of memory (limit 256 MB)");
    assert!(
        reason("bomb.docx").starts_with("archive refused: an entry expands"),
        "{}",
        reason("bomb.docx")
    );
    assert_eq!(reason("huge.mbox"), "file too large (60 MB > limit of 50 MB)");
    assert_eq!(by_name("good.docx")["state"], "done");
    assert_eq!(cli.search("ocelot").len(), 1);
    assert!(cli.source_by_origin(&good).is_some());
    // It is read, with the start of its title: a line the window can show.
    assert_eq!(by_name("titled.html")["state"], "done");
    let title = cli.source_by_origin(&titled).unwrap()["title"].as_str().unwrap().to_string();
    assert_eq!(title.chars().count(), 301, "300 characters and an ellipsis: {title:.80}");
    assert!(title.starts_with("Lynx é Lynx") && title.ends_with('…'), "{title:.80}");
    assert_eq!(cli.search("lynx").len(), 1);
    assert!(report["jobs"].as_array().unwrap().iter().all(|j| j["attempts"] == 1), "{report}");
}

const GOOD_DOCX: &str = r#"<w:document xmlns:w="w"><w:body>
<w:p><w:pPr><w:pStyle w:val="Heading1"/></w:pPr><w:r><w:t>Zoo</w:t></w:r></w:p>
<w:p><w:r><w:t>The ocelot sleeps all day.</w:t></w:r></w:p></w:body></w:document>"#;

/// A PDF whose page tree refers to itself: /Pages lists itself among its kids.
const LOOPING_PDF: &[u8] = b"%PDF-1.4
1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj
2 0 obj << /Type /Pages /Kids [2 0 R 3 0 R] /Count 2 >> endobj
3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >> endobj
4 0 obj << /Length 44 >> stream
BT /F1 12 Tf 72 712 Td (Loop text) Tj ET
endstream endobj
trailer << /Root 1 0 R /Size 5 >>
%%EOF
";

/// A valid one-page PDF whose content stream inflates to `size` bytes of spaces.
fn stream_bomb_pdf(size: usize) -> Vec<u8> {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    let block = vec![b' '; 1024 * 1024];
    for _ in 0..size / block.len() {
        encoder.write_all(&block).unwrap();
    }
    let stream = encoder.finish().unwrap();
    let mut pdf = Vec::new();
    let mut offsets = Vec::new();
    pdf.extend_from_slice(b"%PDF-1.4\n");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
        // A font, so that the page's text is extracted: the content must be inflated.
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R \
         /Resources << /Font << /F1 << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> >> >> >>"
            .to_string(),
    ];
    for (i, object) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj {object} endobj\n", i + 1).as_bytes());
    }
    offsets.push(pdf.len());
    pdf.extend_from_slice(
        format!("4 0 obj << /Length {} /Filter /FlateDecode >> stream\n", stream.len()).as_bytes(),
    );
    pdf.extend_from_slice(&stream);
    pdf.extend_from_slice(b"\nendstream endobj\n");
    let xref = pdf.len();
    pdf.extend_from_slice(b"xref\n0 5\n0000000000 65535 f \n");
    for offset in offsets {
        pdf.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    pdf.extend_from_slice(
        format!("trailer << /Root 1 0 R /Size 5 >>\nstartxref\n{xref}\n%%EOF\n").as_bytes(),
    );
    pdf
}
