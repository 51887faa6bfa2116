#!/usr/bin/env python3
"""Writes samples/operations-review.pdf: the 12-page sample document of the README quick start.

Plain Python, no dependencies: the PDF is written object by object (Helvetica, WinAnsi text,
Flate-compressed page streams). The content is fictional and written for BEACON (Apache-2.0).
Run: python3 scripts/make-sample-pdf.py
     python3 scripts/make-sample-pdf.py --pages 300 OUT.pdf   (the 12 pages repeated to 300, for
     sizing and cost estimates: docs/aws.md)
"""
import os
import sys
import zlib

TITLE = "Northwind Logistics - FY2026 Operations Review"

PAGES = [
    ("1. Executive Summary", [
        "Northwind Logistics closed fiscal year 2026 with revenue of $48,250,000,",
        "up 12.4% on the previous year. Operating margin improved to 9.1%.",
        "The network handled 1,284,000 shipments across 14 regional hubs.",
        "On-time delivery reached 96.2%, the best result since 2019.",
        "",
        "Report date: 2026-04-30",
        "Prepared by: Operations Analytics",
        "Classification: Internal",
    ]),
    ("2. Revenue by Region", [
        "Revenue grew in every region. The North region grew fastest.",
        "",
        "Region      Revenue        Growth",
        "North       $14,900,000    18.2%",
        "Central     $12,300,000    10.5%",
        "South       $11,050,000     9.8%",
        "West        $10,000,000     8.9%",
        "",
        "Total revenue: $48,250,000",
    ]),
    ("3. Shipment Volumes", [
        "Shipment volume rose 7.6% to 1,284,000 shipments.",
        "Parcel volume was stable, while pallet freight rose sharply after",
        "the new contract with Contoso Retail started on March 1, 2026.",
        "Peak week volume was 41,300 shipments in the week of 2025-12-15.",
        "Average shipment weight: 182 kg",
    ]),
    ("4. On-Time Delivery", [
        "On-time delivery improved from 93.8% to 96.2%.",
        "Late deliveries were concentrated in the South hub during January storms.",
        "The route planning system introduced on 2025-09-01 cut average",
        "delivery time by 0.6 days. Customer complaints fell by 21%.",
        "Target for FY2027: 97.0%",
    ]),
    ("5. Fleet and Fuel", [
        "The fleet grew to 612 vehicles, including 74 electric vans.",
        "Fuel cost was $6,420,000, 4.1% below budget thanks to route optimisation.",
        "Electric vans covered 2,100,000 km with a cost per km of $0.21,",
        "compared with $0.38 for diesel vans.",
        "Fleet age (average): 4.3 years",
    ]),
    ("6. Warehouse Operations", [
        "Warehouse utilisation averaged 84% across the network.",
        "The Central hub reached 97% in November and needs more capacity.",
        "Pick accuracy was 99.71%. Dock-to-stock time fell to 5.2 hours.",
        "A new warehouse management system goes live on June 15, 2026.",
        "Capital budget approved: $3,800,000",
    ]),
    ("7. Safety", [
        "The lost-time injury rate fell to 0.8 per 200,000 hours worked.",
        "There were no fatalities and no major incidents in FY2026.",
        "All drivers completed defensive driving training by 2026-02-28.",
        "Safety audits: 56 completed, 3 findings open.",
    ]),
    ("8. People", [
        "Headcount at year end was 3,940 employees, up from 3,710.",
        "Voluntary turnover fell to 11.2%. Driver vacancies remain the main risk.",
        "The apprenticeship programme trained 120 new drivers.",
        "Employee engagement score: 78 of 100",
    ]),
    ("9. Customers", [
        "Northwind served 2,310 active business customers.",
        "The ten largest customers account for 38% of revenue.",
        "Net promoter score rose to 47. Contoso Retail renewed its contract",
        "until 2029-03-31 with a value of $22,000,000.",
    ]),
    ("10. Risks", [
        "Key risks for FY2027 are fuel price volatility, driver shortages and",
        "capacity limits at the Central hub. Each risk has an owner and a plan.",
        "Fuel hedging covers 60% of expected consumption until 2026-12-31.",
        "Risk register review: quarterly",
    ]),
    ("11. Outlook for FY2027", [
        "Management expects revenue of $52,000,000 to $54,000,000 in FY2027.",
        "Capital spending is planned at $9,500,000, mostly for electric vans",
        "and the Central hub extension. The extension opens in Q3 FY2027.",
        "Next review: 2027-04-30",
    ]),
    ("12. Appendix: Definitions", [
        "On-time delivery: shipments delivered within the promised window.",
        "Operating margin: operating profit divided by revenue.",
        "Utilisation: occupied storage positions divided by available positions.",
        "All amounts are in US dollars unless stated otherwise.",
    ]),
]


def escape(text):
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def page_stream(number, total, heading, lines):
    ops = ["BT", "/F2 16 Tf", "72 770 Td", f"({escape(heading)}) Tj", "ET",
           "BT", "/F1 9 Tf", "72 800 Td", f"({escape(TITLE)}) Tj", "ET",
           "BT", "/F1 11 Tf", "14 TL", "72 740 Td"]
    for line in lines:
        ops.append(f"({escape(line)}) Tj T*" if line else "T*")
    ops += ["ET", "BT", "/F1 9 Tf", "290 40 Td", f"(Page {number} of {total}) Tj", "ET"]
    return zlib.compress("\n".join(ops).encode("cp1252"))


def build(page_count=len(PAGES)):
    objects = []  # (number, bytes)

    def add(body):
        objects.append(body)
        return len(objects)

    catalog = add(None)
    pages = add(None)
    font = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    bold = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>")
    info = add(f"<< /Title ({escape(TITLE)}) /Producer (BEACON scripts/make-sample-pdf.py) >>".encode())
    kids = []
    for i in range(1, page_count + 1):
        heading, lines = PAGES[(i - 1) % len(PAGES)]
        if i > len(PAGES):
            heading = f"{heading} (part {(i - 1) // len(PAGES) + 1})"
        data = page_stream(i, page_count, heading, lines)
        stream = add(b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(data) + data + b"\nendstream")
        page = add(f"<< /Type /Page /Parent {pages} 0 R /MediaBox [0 0 595 842] "
                   f"/Resources << /Font << /F1 {font} 0 R /F2 {bold} 0 R >> >> /Contents {stream} 0 R >>".encode())
        kids.append(page)
    objects[catalog - 1] = f"<< /Type /Catalog /Pages {pages} 0 R >>".encode()
    objects[pages - 1] = (f"<< /Type /Pages /Count {len(kids)} /Kids [" + " ".join(f"{k} 0 R" for k in kids) + "] >>").encode()

    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for n, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += (f"trailer\n<< /Size {len(objects) + 1} /Root {catalog} 0 R /Info {info} 0 R >>\n"
            f"startxref\n{xref}\n%%EOF\n").encode()
    return bytes(out)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--pages" and sys.argv[2].isdigit() and int(sys.argv[2]) > 0:
        count, path = int(sys.argv[2]), sys.argv[3]
    elif len(sys.argv) == 1:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        count, path = len(PAGES), os.path.join(root, "samples", "operations-review.pdf")
    else:
        sys.exit("usage: make-sample-pdf.py [--pages N OUT.pdf]")
    with open(path, "wb") as f:
        f.write(build(count))
    print(f"wrote {path}")
