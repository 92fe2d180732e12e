-- Token exchange (issue 10): how a key's requests authenticate — signature (default), token, or both.
ALTER TABLE keys ADD COLUMN auth_policy VARCHAR(16) NOT NULL DEFAULT 'signature';
