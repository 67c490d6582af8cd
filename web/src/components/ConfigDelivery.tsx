// Hands a freshly made config to the user three ways: a .conf download, the clipboard,
// and a QR code that the WireGuard mobile apps import. The config holds the private key
// that was made in this browser; it lives only in this component's props and is gone
// when the dialog closes.

import { useEffect, useRef, useState } from "react";
import { Alert, Button, Col, Row } from "react-bootstrap";
import QRCode from "qrcode";
import { CopyButton } from "./common";
import { confFileName } from "../keys";

function download(name: string, text: string) {
  const url = URL.createObjectURL(new Blob([text], { type: "text/plain" }));
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 0);
}

export function ConfigDelivery({ deviceName, config }: { deviceName: string; config: string }) {
  const canvas = useRef<HTMLCanvasElement>(null);
  const [qrError, setQrError] = useState<string | null>(null);
  const [showText, setShowText] = useState(false);
  const copied = useRef(false);
  const file = confFileName(deviceName);

  // A copied config holds the private key: empty the clipboard when the dialog closes
  // (best effort; clipboard history managers may have kept a copy).
  useEffect(
    () => () => {
      if (copied.current) navigator.clipboard.writeText("").catch(() => {});
    },
    [],
  );

  useEffect(() => {
    if (!canvas.current) return;
    QRCode.toCanvas(canvas.current, config, { errorCorrectionLevel: "M", margin: 4, scale: 5 }).catch(
      (e: unknown) => setQrError(e instanceof Error ? e.message : String(e)),
    );
  }, [config]);

  return (
    // translate="no": browser translation would send the page text, key included, away.
    <div data-testid="config-delivery" translate="no" className="notranslate">
      <Alert variant="warning" data-testid="private-key-warning">
        <strong>Save this config now: the private key is shown only this once.</strong> It was made in this
        browser and never sent to the server, so nobody can show it to you again. If you lose it, rotate the
        device's keys to get a new config.
      </Alert>
      <Row className="g-3 align-items-center">
        <Col xs={12} md="auto" className="text-center">
          {qrError ? (
            <Alert variant="danger">The QR code could not be drawn: {qrError}</Alert>
          ) : (
            <canvas ref={canvas} className="qr border rounded" data-testid="qr" aria-label={`QR code of ${file}`} />
          )}
          <div className="small text-body-secondary mt-1">Scan with the WireGuard app: “+” → “Scan from QR code”.</div>
        </Col>
        <Col>
          <div className="d-grid gap-2">
            <Button variant="primary" onClick={() => download(file, config)} data-testid="download">
              Download {file}
            </Button>
            <CopyButton text={config} label="Copy config to clipboard" testId="copy" onCopied={() => (copied.current = true)} />
            <div className="small text-body-secondary">Paste it before you close this dialog: closing empties the clipboard.</div>
            <Button variant="link" onClick={() => setShowText((s) => !s)} aria-expanded={showText}>
              {showText ? "Hide" : "Show"} config text
            </Button>
          </div>
          <div className="small text-body-secondary mt-2">
            On a computer: <code>wg-quick up ./{file}</code>, or import the file in the WireGuard app.
          </div>
        </Col>
      </Row>
      {showText && (
        <pre className="config-text mt-3 p-2 border rounded bg-body-tertiary" data-testid="config-text">
          {config}
        </pre>
      )}
    </div>
  );
}
