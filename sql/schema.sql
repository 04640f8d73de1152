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
