-- 0005: similarity boosts. FROZEN once released.
-- Rules that raise the similarity of two items by what they share: the same domain, domains a
-- DBA declared related, the same content type. domain_aware_similarity caps the result at 1.0.

CREATE TABLE pyembed.similarity_boosts (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule         text NOT NULL CHECK (rule IN ('same_domain', 'related_domains', 'same_content_type')),
    -- same_domain: domain_a names the domain, NULL for any; related_domains: both, either order.
    domain_a     text,
    domain_b     text,
    -- same_content_type: the type, NULL for any.
    content_type text,
    boost        real NOT NULL CHECK (boost >= 0 AND boost <= 1),
    note         text NOT NULL DEFAULT '',
    CHECK (rule <> 'related_domains' OR (domain_a IS NOT NULL AND domain_b IS NOT NULL
                                         AND domain_a <> domain_b)),
    CHECK (rule = 'related_domains' OR domain_b IS NULL),
    CHECK (rule = 'same_content_type' OR content_type IS NULL)
);
CREATE UNIQUE INDEX similarity_boosts_rule
    ON pyembed.similarity_boosts (rule, coalesce(least(domain_a, domain_b), ''),
                                  coalesce(greatest(domain_a, domain_b), ''), coalesce(content_type, ''));
COMMENT ON TABLE pyembed.similarity_boosts IS
    'boosts for domain_aware_similarity: same domain, related domains, same content type';

INSERT INTO pyembed.similarity_boosts (rule, boost, note) VALUES
    ('same_domain', 0.10, 'default: any two items of the same domain'),
    ('same_content_type', 0.05, 'default: any two items of the same content type');
