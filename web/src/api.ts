// The platform's public REST API, same origin, authenticated by the HttpOnly login cookie.
// Every response is the envelope {success, message, data | error}; errors become ApiError.

export interface User {
  id: number;
  username: string;
  email?: string;
  is_reviewer: boolean;
  reviewer_level: number | null;
  created_at: string;
  updated_at?: string;
}

export interface Session {
  id: string;
  user_id: number;
  name: string;
  language: string;
  is_active: boolean;
  created_at: string;
  updated_at: string;
}

export interface FileMeta {
  name: string;
  path: string;
  type: "file" | "directory";
  size: number;
  modified: string;
  version: number;
}

export type Encoding = "utf-8" | "base64";

export interface FileContent {
  path: string;
  content: string;
  encoding: Encoding;
  size: number;
  modified: string;
  version: number;
}

export interface WorkspaceStatus {
  status: string;
  initialized: boolean;
  message: string;
  file_count: number;
  directory_count?: number;
  execution: { state: "stopped" | "starting" | "running"; backend: string; since: string | null };
  active_connections: number;
  sync_skipped?: { path: string; reason: string }[];
  last_synced_at?: string | null;
}

export type ReviewStatus = "pending" | "in_review" | "approved" | "rejected" | "requires_changes";
export type Priority = "low" | "medium" | "high" | "urgent";

export interface Review {
  id: number;
  session_id: string;
  title: string;
  description: string;
  priority: Priority;
  status: ReviewStatus;
  submitted_by: number;
  assigned_to: number | null;
  created_at: string;
  updated_at: string;
  reviewed_at: string | null;
}

export interface SessionReviewStatus {
  reviewRequest: Review | null;
  isReviewer: boolean;
  canSubmitForReview: boolean;
}

/** A refused request: HTTP status plus the envelope's message and error. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly detail: string,
  ) {
    super(detail && detail !== message ? `${message}: ${detail}` : message);
  }
}

interface Result<T> {
  data: T;
  etag: string | null;
  count?: number;
}

/** Called when the platform answers 401: the login has expired or was revoked. */
let onUnauthenticated: () => void = () => {};
export function setUnauthenticatedHandler(handler: () => void): void {
  onUnauthenticated = handler;
}

async function request<T>(
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<Result<T>> {
  const init: RequestInit = { method, credentials: "same-origin", headers: { Accept: "application/json", ...headers } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    (init.headers as Record<string, string>)["Content-Type"] = "application/json";
  }
  let response: Response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, "The platform cannot be reached", "check your connection");
  }
  let envelope: { success?: boolean; message?: string; error?: string; data?: T; count?: number } = {};
  try {
    envelope = await response.json();
  } catch {
    // a body that is not JSON (a proxy's error page): reported by status below
  }
  if (!response.ok) {
    if (response.status === 401 && !path.startsWith("/api/users/login")) onUnauthenticated();
    throw new ApiError(response.status, envelope.message ?? response.statusText, envelope.error ?? "");
  }
  return { data: envelope.data as T, etag: response.headers.get("ETag"), count: envelope.count };
}

/** A workspace path in a URL: each segment encoded, the slashes kept. */
export function encodePath(path: string): string {
  return path.split("/").map(encodeURIComponent).join("/");
}

const files = (id: string) => `/api/workspace/${encodeURIComponent(id)}/files`;

export const api = {
  register: (username: string, email: string, password: string) =>
    request<{ user_id: number; user: User }>("POST", "/api/users/register", { username, email, password }),
  login: (username: string, password: string) =>
    request<{ user: User; expires_at: string }>("POST", "/api/users/login", { username, password }),
  logout: () => request<unknown>("POST", "/api/users/logout"),
  me: () => request<User>("GET", "/api/users/me"),
  setReviewer: (isReviewer: boolean, level: number | null) =>
    request<User>("PUT", "/api/users/me/reviewer-status", { is_reviewer: isReviewer, reviewer_level: level }),

  listSessions: () => request<Session[]>("GET", "/api/postgres_sessions/?limit=100"),
  getSession: (id: string) => request<Session>("GET", `/api/postgres_sessions/${encodeURIComponent(id)}`),
  createSession: (name: string) => request<Session>("POST", "/api/postgres_sessions/", { name, language: "python" }),
  renameSession: (id: string, name: string) =>
    request<Session>("PUT", `/api/postgres_sessions/${encodeURIComponent(id)}`, { name }),
  deleteSession: (id: string) => request<unknown>("DELETE", `/api/postgres_sessions/${encodeURIComponent(id)}`),

  listFiles: (id: string) => request<FileMeta[]>("GET", files(id)),
  readFile: (id: string, path: string) => request<FileContent>("GET", `${files(id)}/${encodePath(path)}`),
  createEntry: (id: string, path: string, type: "file" | "directory", content = "", encoding: Encoding = "utf-8") =>
    request<FileMeta>("POST", files(id), type === "file" ? { path, type, content, encoding } : { path, type }),
  /** Save a file; with `ifMatch` (an ETag) the platform refuses a stale write with 412. */
  writeFile: (id: string, path: string, content: string, ifMatch?: string | null, encoding: Encoding = "utf-8") =>
    request<FileMeta>("PUT", `${files(id)}/${encodePath(path)}`, { content, encoding }, ifMatch ? { "If-Match": ifMatch } : {}),
  deleteEntry: (id: string, path: string) =>
    request<{ path: string; deleted_entries: number }>("DELETE", `${files(id)}/${encodePath(path)}`),
  ensureDefaults: (id: string) =>
    request<{ files_created: string[] }>("POST", `/api/workspace/${encodeURIComponent(id)}/ensure-defaults`),
  status: (id: string) => request<WorkspaceStatus>("GET", `/api/workspace/${encodeURIComponent(id)}/status`),

  listReviews: (query = "") => request<Review[]>("GET", `/api/reviews/?limit=100${query}`),
  getReview: (id: number) => request<Review>("GET", `/api/reviews/${id}`),
  submitReview: (sessionId: string, title: string, description: string, priority: Priority) =>
    request<Review>("POST", "/api/reviews/", { session_id: sessionId, title, description, priority }),
  setReviewStatus: (id: number, status: ReviewStatus, comment = "") =>
    request<Review>("PUT", `/api/reviews/${id}/status`, { status, comment }),
  reviewHistory: (id: number) =>
    request<{ action: string; to_status: ReviewStatus | null; comment: string; created_at: string }[]>("GET", `/api/reviews/${id}/history`),
  sessionReviewStatus: (sessionId: string) =>
    request<SessionReviewStatus>("GET", `/api/reviews/session/${encodeURIComponent(sessionId)}/status`),
};
