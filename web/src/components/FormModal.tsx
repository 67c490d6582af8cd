import type { ReactNode } from "react";
import { Button, Form, Modal } from "react-bootstrap";
import { ErrorAlert } from "./common";

/** A dialog holding one form: the fields, the server's error, Cancel and the submit button. */
export function FormModal(props: {
  title: string;
  /** The form's id (the footer's submit button belongs to it). */
  id: string;
  submitLabel: string;
  submitTestId: string;
  busy: boolean;
  error: unknown;
  errorTitle?: string;
  onSubmit: () => void;
  onClose: () => void;
  children: ReactNode;
}) {
  return (
    <Modal show onHide={props.onClose} centered>
      <Modal.Header closeButton>
        <Modal.Title>{props.title}</Modal.Title>
      </Modal.Header>
      <Modal.Body>
        <Form
          id={props.id}
          onSubmit={(e) => {
            e.preventDefault();
            props.onSubmit();
          }}
        >
          {props.children}
          <ErrorAlert error={props.error} title={props.errorTitle ?? "Not saved"} />
        </Form>
      </Modal.Body>
      <Modal.Footer>
        <Button variant="secondary" onClick={props.onClose}>
          Cancel
        </Button>
        <Button type="submit" form={props.id} disabled={props.busy} data-testid={props.submitTestId}>
          {props.busy ? "Saving…" : props.submitLabel}
        </Button>
      </Modal.Footer>
    </Modal>
  );
}
