-- The Xrozen Workflow app's first SQLite schema (13 tables), written from the facts in
-- shared/XROZEN.md. Declared types are only TEXT / INTEGER / REAL / BLOB so that no column gets
-- NUMERIC affinity (which would silently turn numeric-looking text such as '0012' into 12).
-- The version table _migrations belongs to the migration runner, not to this file.

-- migrate:up

CREATE TABLE users (
  id TEXT PRIMARY KEY,
  email TEXT NOT NULL UNIQUE,
  password_hash TEXT NOT NULL,
  full_name TEXT,
  user_category TEXT NOT NULL DEFAULT 'editor'
    CHECK (user_category IN ('editor', 'client', 'agency')),
  created_at TEXT DEFAULT (datetime('now')),
  updated_at TEXT DEFAULT (datetime('now'))
);

CREATE TABLE profiles (
  id TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
  email TEXT NOT NULL,
  full_name TEXT,
  avatar_url TEXT,
  user_category TEXT NOT NULL DEFAULT 'editor'
    CHECK (user_category IN ('editor', 'client', 'agency')),
  subscription_tier TEXT NOT NULL DEFAULT 'basic'
    CHECK (subscription_tier IN ('basic', 'pro', 'premium')),
  subscription_active INTEGER NOT NULL DEFAULT 1,
  trial_end_date TEXT,
  subscription_start_date TEXT,
  created_at TEXT DEFAULT (datetime('now')),
  updated_at TEXT DEFAULT (datetime('now'))
);

CREATE TABLE user_roles (
  id TEXT PRIMARY KEY,
  user_id TEXT REFERENCES users(id) ON DELETE CASCADE,
  role TEXT NOT NULL CHECK (role IN ('editor', 'client', 'agency')),
  created_at TEXT DEFAULT (datetime('now')),
  UNIQUE (user_id, role)
);

CREATE TABLE editors (
  id TEXT PRIMARY KEY,
  user_id TEXT REFERENCES users(id) ON DELETE SET NULL,
  full_name TEXT NOT NULL,
  email TEXT NOT NULL,
  specialty TEXT,
  employment_type TEXT NOT NULL DEFAULT 'freelance'
    CHECK (employment_type IN ('fulltime', 'freelance')),
  hourly_rate REAL,
  monthly_salary REAL,
  created_at TEXT DEFAULT (datetime('now')),
  updated_at TEXT DEFAULT (datetime('now'))
);

CREATE TABLE clients (
  id TEXT PRIMARY KEY,
  user_id TEXT REFERENCES users(id) ON DELETE SET NULL,
  full_name TEXT,
  email TEXT,
  company TEXT,
  employment_type TEXT CHECK (employment_type IN ('fulltime', 'freelance')),
  project_rate REAL,
  monthly_rate REAL,
  created_at TEXT DEFAULT (datetime('now')),
  updated_at TEXT DEFAULT (datetime('now'))
);

CREATE TABLE project_types (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  created_at TEXT DEFAULT (datetime('now'))
);

CREATE TABLE projects (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  description TEXT,
  project_type TEXT,
  editor_id TEXT,
  client_id TEXT,
  creator_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  raw_footage_link TEXT,
  assigned_date TEXT,
  deadline TEXT,
  fee REAL,
  status TEXT DEFAULT 'draft',
  parent_project_id TEXT REFERENCES projects(id) ON DELETE CASCADE,
  is_subproject INTEGER DEFAULT 0,
  created_at TEXT DEFAULT (datetime('now')),
  updated_at TEXT DEFAULT (datetime('now'))
);

CREATE TABLE project_clients (
  id TEXT PRIMARY KEY,
  project_id TEXT REFERENCES projects(id) ON DELETE CASCADE,
  client_id TEXT REFERENCES profiles(id) ON DELETE CASCADE,
  created_at TEXT DEFAULT (datetime('now')),
  UNIQUE (project_id, client_id)
);

CREATE TABLE video_versions (
  id TEXT PRIMARY KEY,
  project_id TEXT REFERENCES projects(id) ON DELETE CASCADE,
  version_number INTEGER NOT NULL,
  preview_url TEXT,
  final_url TEXT,
  is_approved INTEGER NOT NULL DEFAULT 0,
  correction_notes TEXT,
  uploaded_by TEXT REFERENCES profiles(id),
  created_at TEXT DEFAULT (datetime('now')),
  updated_at TEXT DEFAULT (datetime('now'))
);

CREATE TABLE messages (
  id TEXT PRIMARY KEY,
  project_id TEXT REFERENCES projects(id) ON DELETE CASCADE,
  sender_id TEXT NOT NULL REFERENCES profiles(id),
  recipient_id TEXT REFERENCES profiles(id),
  content TEXT NOT NULL,
  is_read INTEGER NOT NULL DEFAULT 0,
  created_at TEXT DEFAULT (datetime('now'))
);

CREATE TABLE payments (
  id TEXT PRIMARY KEY,
  project_id TEXT REFERENCES projects(id) ON DELETE CASCADE,
  payer_id TEXT REFERENCES profiles(id),
  recipient_id TEXT REFERENCES profiles(id),
  amount REAL NOT NULL,
  payment_type TEXT CHECK (payment_type IN ('freelance', 'fulltime')),
  status TEXT CHECK (status IN ('pending', 'paid', 'overdue')),
  invoice_url TEXT,
  due_date TEXT,
  paid_date TEXT,
  created_at TEXT DEFAULT (datetime('now')),
  updated_at TEXT DEFAULT (datetime('now'))
);

CREATE TABLE database_config (
  id TEXT PRIMARY KEY,
  provider TEXT DEFAULT 'sqlite',
  config TEXT NOT NULL DEFAULT '{}',
  is_active INTEGER DEFAULT 0
);

CREATE TABLE password_reset_tokens (
  id TEXT PRIMARY KEY,
  user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  token TEXT NOT NULL UNIQUE,
  expires_at TEXT NOT NULL,
  used_at TEXT,
  created_at TEXT DEFAULT (datetime('now'))
);

CREATE INDEX idx_users_email ON users(email);
CREATE INDEX idx_profiles_user_category ON profiles(user_category);
CREATE INDEX idx_profiles_subscription_tier ON profiles(subscription_tier);
CREATE INDEX idx_projects_creator_id ON projects(creator_id);
CREATE INDEX idx_projects_editor_id ON projects(editor_id);
CREATE INDEX idx_projects_client_id ON projects(client_id);
CREATE INDEX idx_projects_deadline ON projects(deadline);
CREATE INDEX idx_projects_status ON projects(status);
CREATE INDEX idx_messages_sender_id ON messages(sender_id);
CREATE INDEX idx_messages_recipient_id ON messages(recipient_id);
CREATE INDEX idx_messages_project_id ON messages(project_id);
CREATE INDEX idx_messages_created_at ON messages(created_at);
CREATE INDEX idx_payments_payer_id ON payments(payer_id);
CREATE INDEX idx_payments_recipient_id ON payments(recipient_id);
CREATE INDEX idx_payments_status ON payments(status);

-- migrate:down

DROP INDEX IF EXISTS idx_payments_status;
DROP INDEX IF EXISTS idx_payments_recipient_id;
DROP INDEX IF EXISTS idx_payments_payer_id;
DROP INDEX IF EXISTS idx_messages_created_at;
DROP INDEX IF EXISTS idx_messages_project_id;
DROP INDEX IF EXISTS idx_messages_recipient_id;
DROP INDEX IF EXISTS idx_messages_sender_id;
DROP INDEX IF EXISTS idx_projects_status;
DROP INDEX IF EXISTS idx_projects_deadline;
DROP INDEX IF EXISTS idx_projects_client_id;
DROP INDEX IF EXISTS idx_projects_editor_id;
DROP INDEX IF EXISTS idx_projects_creator_id;
DROP INDEX IF EXISTS idx_profiles_subscription_tier;
DROP INDEX IF EXISTS idx_profiles_user_category;
DROP INDEX IF EXISTS idx_users_email;

DROP TABLE IF EXISTS password_reset_tokens;
DROP TABLE IF EXISTS database_config;
DROP TABLE IF EXISTS payments;
DROP TABLE IF EXISTS messages;
DROP TABLE IF EXISTS video_versions;
DROP TABLE IF EXISTS project_clients;
DROP TABLE IF EXISTS projects;
DROP TABLE IF EXISTS project_types;
DROP TABLE IF EXISTS clients;
DROP TABLE IF EXISTS editors;
DROP TABLE IF EXISTS user_roles;
DROP TABLE IF EXISTS profiles;
DROP TABLE IF EXISTS users;
