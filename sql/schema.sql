-- ihome's user table (ihome/models.py, class User), applied idempotently at start.
-- Column names and sizes match ihome so an existing ih_user_profile table can be used as is;
-- password_hash is widened to 255 because argon2id hashes are longer than Werkzeug's.
CREATE TABLE IF NOT EXISTS ih_user_profile (
    id INT UNSIGNED NOT NULL AUTO_INCREMENT,
    name VARCHAR(32) NOT NULL,
    password_hash VARCHAR(255) NOT NULL,
    mobile VARCHAR(11) NOT NULL,
    real_name VARCHAR(32) NULL,
    id_card VARCHAR(20) NULL,
    avatar_url VARCHAR(128) NULL,
    create_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    update_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
    PRIMARY KEY (id),
    UNIQUE KEY uq_ih_user_profile_name (name),
    UNIQUE KEY uq_ih_user_profile_mobile (mobile)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Consent to the 用户协议 and 隐私政策 (services/accounts/consent.py): one row per sign-up that
-- gave it, written in the transaction that creates the user. The address is removed when the
-- account is purged; the versions and time stay as the record of what was agreed.
CREATE TABLE IF NOT EXISTS ih_user_consent (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    user_id INT UNSIGNED NOT NULL,
    terms_version VARCHAR(32) NOT NULL,
    privacy_version VARCHAR(32) NOT NULL,
    source VARCHAR(16) NOT NULL,
    client_address VARCHAR(45) NULL,
    agreed_at DATETIME NOT NULL,
    PRIMARY KEY (id),
    KEY ix_ih_user_consent_user (user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Account deletion (注销, services/accounts/deletion.py): pending for the cooling-off period,
-- cancelled by a login within it, then claimed by one purge run (claimed_by, claimed_at) and
-- done. Times are UTC.
CREATE TABLE IF NOT EXISTS ih_account_deletion (
    user_id INT UNSIGNED NOT NULL,
    status VARCHAR(16) NOT NULL,
    requested_at DATETIME NOT NULL,
    purge_after DATETIME NOT NULL,
    cancelled_at DATETIME NULL,
    claimed_by VARCHAR(64) NULL,
    claimed_at DATETIME NULL,
    completed_at DATETIME NULL,
    PRIMARY KEY (user_id),
    KEY ix_ih_account_deletion_due (status, purge_after)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
