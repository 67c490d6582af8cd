import { useState, type ReactNode } from "react";
import { Button, Modal } from "react-bootstrap";
import { ErrorAlert } from "./common";

/** Asks before a destructive action; shows the server's error if the action fails. */
export function ConfirmModal(props: {
  show: boolean;
  title: string;
  children: ReactNode;
  confirmLabel: string;
  onConfirm: () => Promise<void>;
  onClose: () => void;
}) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const close = () => {
    if (busy) return;
    setError(null);
    props.onClose();
  };
  return (
    <Modal show={props.show} onHide={close} centered>
      <Modal.Header closeButton>
        <Modal.Title>{props.title}</Modal.Title>
      </Modal.Header>
      <Modal.Body>
        {props.children}
        <ErrorAlert error={error} />
      </Modal.Body>
      <Modal.Footer>
        <Button variant="secondary" onClick={close} disabled={busy}>
          Cancel
        </Button>
        <Button
          variant="danger"
          disabled={busy}
          data-testid="confirm"
          onClick={async () => {
            setBusy(true);
            setError(null);
            try {
              await props.onConfirm();
            } catch (e) {
              setError(e);
            } finally {
              setBusy(false);
            }
          }}
        >
          {busy ? "Working…" : props.confirmLabel}
        </Button>
      </Modal.Footer>
    </Modal>
  );
}
