/**
 * Snapshots of rbd volumes: /v1/snapshots…
 *
 *     POST   /v1/snapshots               CreateSnapshotRequest  → 201 SnapshotInfo
 *     GET    /v1/snapshots                                      → SnapshotInfo[]
 *     GET    /v1/snapshots/:id                                  → SnapshotInfo
 *     DELETE /v1/snapshots/:id                                  → Deleted (409 while clones use it)
 *
 * A volume restored from a snapshot is `POST /v1/volumes` with `fromSnapshot`.
 */

export const SNAPSHOTS_API = {
  snapshots: '/v1/snapshots',
  snapshot: '/v1/snapshots/:id',
} as const;

export interface CreateSnapshotRequest {
  volumeId: string;
  name?: string;
}

export interface SnapshotInfo {
  id: string;
  volumeId: string;
  name: string | null;
  /** The volume's size when the snapshot was taken. */
  size: number;
  createdAt: string;
}
