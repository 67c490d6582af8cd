import type { ReactNode } from "react";
import { Button, Modal } from "react-bootstrap";
import { ErrorAlert } from "./common";
import { useAction } from "../action";

/** Asks before a destructive action; shows the server's error if the action fails. */
export function ConfirmModal(props: {
  show: boolean;
  title: string;
  children: ReactNode;
  confirmLabel: string;
  onConfirm: () => Promise<void>;
  onClose: () => void;
}) {
  const { busy, error, run, setError } = useAction();
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
            await run(async () => {
              await props.onConfirm();
            });
          }}
        >
          {busy ? "Working…" : props.confirmLabel}
        </Button>
      </Modal.Footer>
    </Modal>
  );
}
