// Revoking a device, the same way for its owner and for an admin: ask, call, then say in
// words what the node confirmed.

import type { ReactNode } from "react";
import { Alert } from "react-bootstrap";
import { ConfirmModal } from "./ConfirmModal";
import type { Device, NodeAck, RevokeResponse } from "../types";

export interface NoticeText {
  variant: string;
  text: string;
}

/** What the node said about a revocation, in words. */
export function revokeNotice(name: string, ack: NodeAck): NoticeText {
  switch (ack.status) {
    case "acknowledged":
      return { variant: "success", text: `${name} is revoked. The node confirmed the peer is removed (${ack.waited_ms} ms).` };
    case "timeout":
      return {
        variant: "warning",
        text: `${name} is revoked, but the node did not confirm within ${ack.waited_ms} ms. It removes the peer as soon as it processes the change.`,
      };
    case "offline":
      return {
        variant: "warning",
        text: `${name} is revoked. Its node is offline now; it removes the peer when it reconnects (it cannot serve the key before that).`,
      };
    default:
      return { variant: "success", text: `${name} is revoked (no live tunnel needed removing).` };
  }
}

/** Asks before revoking `device`; on success hands the node's answer, in words, to `onDone`. */
export function RevokeDialog(props: {
  device: Device | null;
  title: string;
  revoke: (id: string) => Promise<RevokeResponse>;
  onClose: () => void;
  onDone: (notice: NoticeText) => void;
  children: ReactNode;
}) {
  const { device } = props;
  return (
    <ConfirmModal
      show={device !== null}
      title={props.title}
      confirmLabel="Revoke device"
      onClose={props.onClose}
      onConfirm={async () => {
        if (!device) return;
        const r = await props.revoke(device.id);
        props.onClose();
        props.onDone(revokeNotice(device.name, r.node_ack));
      }}
    >
      {props.children}
    </ConfirmModal>
  );
}

/** A dismissible outcome message (`data-testid="notice"`). */
export function Notice({ notice, onClose }: { notice: NoticeText | null; onClose: () => void }) {
  if (!notice) return null;
  return (
    <Alert variant={notice.variant} dismissible onClose={onClose} data-testid="notice">
      {notice.text}
    </Alert>
  );
}
