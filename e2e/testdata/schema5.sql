--
-- PostgreSQL database dump
--

\restrict CO1nBZLNdXyXnM3vN7UNz1goa7dnVfB1U0zo0jD0OAT4Qwyb26UlI0NXd4LFdKY

-- Dumped from database version 15.18 (Debian 15.18-0+deb12u1)
-- Dumped by pg_dump version 15.18 (Debian 15.18-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: admin_tokens; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.admin_tokens (
    lookup bytea NOT NULL,
    sealed bytea NOT NULL,
    expires_at timestamp with time zone NOT NULL,
    revoked_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT admin_tokens_lookup_check CHECK ((length(lookup) = 32))
);


--
-- Name: TABLE admin_tokens; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON TABLE public.admin_tokens IS 'Admin tokens by SHA-256 lookup hash; details sealed and bound to the hash.';


--
-- Name: audit_checkpoints; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.audit_checkpoints (
    chain_id bytea NOT NULL,
    lane smallint NOT NULL,
    seq bigint NOT NULL,
    last_mac bytea NOT NULL,
    mac bytea NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL
);


--
-- Name: audit_keys; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.audit_keys (
    id smallint DEFAULT 1 NOT NULL,
    dek_id bytea NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT audit_keys_id_check CHECK ((id = 1))
);


--
-- Name: audit_log; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.audit_log (
    id bigint NOT NULL,
    chain_id bytea NOT NULL,
    lane smallint NOT NULL,
    seq bigint NOT NULL,
    at timestamp with time zone NOT NULL,
    request_id text NOT NULL,
    caller text NOT NULL,
    peer text NOT NULL,
    procedure text NOT NULL,
    target text NOT NULL,
    decision text NOT NULL,
    reason text NOT NULL,
    code text NOT NULL,
    duration_us bigint NOT NULL,
    mac bytea
);


--
-- Name: TABLE audit_log; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON TABLE public.audit_log IS 'One record per request; records of a (chain_id, lane) are chained with MACs.';


--
-- Name: audit_log_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.audit_log_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: audit_log_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.audit_log_id_seq OWNED BY public.audit_log.id;


--
-- Name: data_keys; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.data_keys (
    id bytea NOT NULL,
    root_key_version integer NOT NULL,
    wrapped bytea NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    retired_at timestamp with time zone,
    CONSTRAINT data_keys_id_check CHECK ((length(id) = 16))
);


--
-- Name: TABLE data_keys; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON TABLE public.data_keys IS 'Data encryption keys wrapped under a root key version; retired keys only decrypt.';


--
-- Name: policies; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.policies (
    name text NOT NULL COLLATE pg_catalog."C",
    sealed bytea NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL
);


--
-- Name: TABLE policies; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON TABLE public.policies IS 'Workload policies, sealed and bound to their name.';


--
-- Name: policy_generation; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.policy_generation (
    id smallint DEFAULT 1 NOT NULL,
    generation bigint NOT NULL,
    CONSTRAINT policy_generation_id_check CHECK ((id = 1))
);


--
-- Name: policy_manifest; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.policy_manifest (
    id smallint DEFAULT 1 NOT NULL,
    sealed bytea NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT policy_manifest_id_check CHECK ((id = 1))
);


--
-- Name: TABLE policy_manifest; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON TABLE public.policy_manifest IS 'Sealed list of the current policy rows (generation, name -> SHA-256 of the sealed row).';


--
-- Name: root_keyrings; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.root_keyrings (
    id smallint DEFAULT 1 NOT NULL,
    keyring_id bytea NOT NULL,
    kdf_params bytea NOT NULL,
    ciphertext bytea NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT root_keyrings_id_check CHECK ((id = 1))
);


--
-- Name: TABLE root_keyrings; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON TABLE public.root_keyrings IS 'The root keyring sealed with a key derived from the admin password; at most one row.';


--
-- Name: schema_migrations; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.schema_migrations (
    version bigint NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL
);


--
-- Name: secret_versions; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.secret_versions (
    path text NOT NULL COLLATE pg_catalog."C",
    version bigint NOT NULL,
    dek_id bytea NOT NULL,
    sealed bytea,
    created_by text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    deleted_at timestamp with time zone,
    destroyed_at timestamp with time zone,
    CONSTRAINT secret_versions_destroyed_check CHECK (((destroyed_at IS NULL) = (sealed IS NOT NULL))),
    CONSTRAINT secret_versions_version_check CHECK ((version >= 1))
);


--
-- Name: TABLE secret_versions; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON TABLE public.secret_versions IS 'Every version of every secret, sealed under a data key and bound to (path, version).';


--
-- Name: secrets; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.secrets (
    path text NOT NULL COLLATE pg_catalog."C",
    current_version bigint NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    oldest_version bigint DEFAULT 0 NOT NULL,
    max_versions integer DEFAULT 0 NOT NULL,
    cas_required boolean DEFAULT false NOT NULL,
    custom_metadata bytea,
    CONSTRAINT secrets_current_version_check CHECK ((current_version >= 0)),
    CONSTRAINT secrets_max_versions_check CHECK (((max_versions >= 0) AND (max_versions <= 1000))),
    CONSTRAINT secrets_oldest_version_check CHECK ((oldest_version >= 0))
);


--
-- Name: TABLE secrets; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON TABLE public.secrets IS 'One row per secret path; current_version is the newest version number.';


--
-- Name: audit_log id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.audit_log ALTER COLUMN id SET DEFAULT nextval('public.audit_log_id_seq'::regclass);


--
-- Data for Name: admin_tokens; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.admin_tokens (lookup, sealed, expires_at, revoked_at, created_at) FROM stdin;
\\xe458f6076ad69c516c68480dfe8d1e269bb515cb0bedd1fdf23f2e30c98d0231	\\x012c114f0ff04bde195ad0acea5ab3ecaa4de5cb3a9b8027b6cb1fa7350d3799f0b4431ff84a29f0fada4d444232ed8d7802bd3781f4a378c6e21e0c824cf7bee2a6142e904c32f440d9a4008222eb60a5bf7ddacc27d04c4ce8181baaa8ab91b7c2712e72064cd92178877593e0b54c34d7fd7970c162b43dd09464ba546366f8943a352f0f09d0b2d48d4abb9818a2ec38fca3b9994dfb453759ac8fdf3188b80b8195f27ab18faf3ef6bf13ca945c1ea6df3ae78b8b8fe92c9eee0e564ad4373f5c9de450e2f910776025b37083c55897b643ce16c00493a0fe3553cd1fa020283ad9981a5272b929bcb3ff737e6f8e8f8203112176f188b6446548	2026-12-03 23:11:17.94582+00	\N	2026-12-03 15:11:17.948388+00
\\x128a5b69f3bafe669da519efaa8708abc61f8c6b7ae44cdc7d633f731ebc9b68	\\x012c114f0ff04bde195ad0acea5ab3ecaa5177ebcc6847b8e1c2dbf2b29a290bbd1673ca24fc3eb09b823d60eae8867de30d3aacea46a60eb7db42348d49ee7b8be28acaeea0e2663d62e951c9393f549493aca2ac2fa48acdf4ff69f1cac8a14613ec0b11dd732bbe6d81d7f30d7b4fe976a0c2bf8ec7c1b6d014e093d9bcf1018b1dc403112b60127fbc4bb820d357ea5d341e05ebfe0c3c600f16f44fc9b74e2347584ddd018542d4e55c20b2c722ea92836e68ea52ac4d4d53f5a1082fd755f0007a92e8bf8cd586221809ad95d425bd8862a9f93027eaec80511a94be32cca44cf133b6c13fc2db5ad25c5a9d0e853288e8ceb173a78a5a6d48	2026-12-03 23:11:18.106536+00	2026-12-03 15:11:18.131057+00	2026-12-03 15:11:18.106781+00
\.


--
-- Data for Name: audit_checkpoints; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.audit_checkpoints (chain_id, lane, seq, last_mac, mac, created_at) FROM stdin;
\.


--
-- Data for Name: audit_keys; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.audit_keys (id, dek_id, created_at) FROM stdin;
1	\\x368b70f5a6ddd0b67fbac5bb5c45d27d	2026-12-03 15:11:17.986577+00
\.


--
-- Data for Name: audit_log; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.audit_log (id, chain_id, lane, seq, at, request_id, caller, peer, procedure, target, decision, reason, code, duration_us, mac) FROM stdin;
1	\\xe741e963e6a19fc8d448e92c2d203c97	-1	1	2026-12-03 15:11:17.105695+00	2190e238bd63823a	spiffe://spike.local/spike/pilot	127.0.0.1:49702	/spike.nexus.v1.OperatorService/Status		allow	admin SVID	ok	3689	\N
2	\\xe741e963e6a19fc8d448e92c2d203c97	-1	2	2026-12-03 15:11:17.129804+00	bea20c4e34365637	spiffe://spike.local/spike/pilot	127.0.0.1:49706	/spike.nexus.v1.OperatorService/Init		allow	admin SVID	ok	378865	\N
3	\\xe741e963e6a19fc8d448e92c2d203c97	0	1	2026-12-03 15:11:17.981329+00	39e6d1bb0813e28b	spiffe://spike.local/spike/pilot	127.0.0.1:49716	/spike.nexus.v1.OperatorService/Login		allow	admin SVID	ok	127007	\\xafd4ac10c7bab7aaf331726dfabd5799e5d10948d7b20d6aa202803713b7f4ba
4	\\xe741e963e6a19fc8d448e92c2d203c97	1	1	2026-12-03 15:11:18.129693+00	b9f6c8b8148a4f8e	spiffe://spike.local/spike/pilot	127.0.0.1:49726	/spike.nexus.v1.OperatorService/Logout	token:128a5b69f3bafe66	allow	admin token token:128a5b69f3bafe66	ok	2036	\\x3f922e5cea5d48de1555fa707c6faa0c5140e6a9415ffdb5544f6c3b054ea80c
5	\\xe741e963e6a19fc8d448e92c2d203c97	2	1	2026-12-03 15:11:18.15667+00	6715593f7f34fec7	spiffe://spike.local/spike/pilot	127.0.0.1:49734	/spike.nexus.v1.SecretService/PutSecret	apps/a	allow	admin token token:e458f6076ad69c51	ok	3495	\\x1b56363456fcb0dc219e5d08dbebe7b96e48553b50eabe441391569309a9da90
6	\\xe741e963e6a19fc8d448e92c2d203c97	3	1	2026-12-03 15:11:18.184094+00	9922577ef9cc0c73	spiffe://spike.local/spike/pilot	127.0.0.1:49746	/spike.nexus.v1.SecretService/PutSecret	apps/a	allow	admin token token:e458f6076ad69c51	ok	1648	\\x3c7e4806b01455035ed25e6760e4c82f61965f88a953d2b46a18b34f1bfb5fee
7	\\xe741e963e6a19fc8d448e92c2d203c97	4	1	2026-12-03 15:11:18.198599+00	49afffd6360a49fd	spiffe://spike.local/spike/pilot	127.0.0.1:49762	/spike.nexus.v1.SecretService/PutSecret	apps/a	allow	admin token token:e458f6076ad69c51	ok	1774	\\xa1e0f058b343b2b70fc16115184486edd0d4fe5537ff675a72cc7cfd2f75d4f2
8	\\xe741e963e6a19fc8d448e92c2d203c97	5	1	2026-12-03 15:11:18.222795+00	c6ee7831fab972b9	spiffe://spike.local/spike/pilot	127.0.0.1:49766	/spike.nexus.v1.SecretService/PutSecret	apps/a	allow	admin token token:e458f6076ad69c51	ok	3731	\\xb760f6f81b81d848488d6e1eeb9958c2ca6d55d2be177be93817c4d694a037f1
9	\\xe741e963e6a19fc8d448e92c2d203c97	6	1	2026-12-03 15:11:18.23942+00	cf5a4a7072e0c5e0	spiffe://spike.local/spike/pilot	127.0.0.1:49776	/spike.nexus.v1.SecretService/DeleteSecret	apps/a	allow	admin token token:e458f6076ad69c51	ok	1742	\\x35c9a3ba1d71630072e35939751be99d63d7166e8b018fff8a1a9b274d4ba8e6
10	\\xe741e963e6a19fc8d448e92c2d203c97	7	1	2026-12-03 15:11:18.253544+00	bc439d877dc4cb3d	spiffe://spike.local/spike/pilot	127.0.0.1:49786	/spike.nexus.v1.SecretService/DestroySecret	apps/a	allow	admin token token:e458f6076ad69c51	ok	1919	\\x7290554a0fc1bb54da0d7a016f455bac3cca145f05e3a60b7368d071a1060427
11	\\xe741e963e6a19fc8d448e92c2d203c97	0	2	2026-12-03 15:11:18.268792+00	5c2fcc4db8de8da4	spiffe://spike.local/spike/pilot	127.0.0.1:49802	/spike.nexus.v1.SecretService/UpdateSecretMetadata	apps/a	allow	admin token token:e458f6076ad69c51	ok	2511	\\xf493e901bbd27e8088d86482990f356a126497772cbb0fc7c32b1122e1871cda
12	\\xe741e963e6a19fc8d448e92c2d203c97	1	2	2026-12-03 15:11:18.293496+00	cb374d8412ff8f0f	spiffe://spike.local/spike/pilot	127.0.0.1:49804	/spike.nexus.v1.SecretService/UpdateSecretMetadata	apps/b	allow	admin token token:e458f6076ad69c51	ok	2367	\\x777a7cae29ce47d4190eecf0274ee7c1d67dc82307775692b0558bfb8a4224c6
13	\\xe741e963e6a19fc8d448e92c2d203c97	2	2	2026-12-03 15:11:18.311361+00	adf04774061d3b6f	spiffe://spike.local/spike/pilot	127.0.0.1:49818	/spike.nexus.v1.SecretService/PutSecret	apps/b	allow	admin token token:e458f6076ad69c51	ok	1485	\\x3c50c991d2587e92e4fcdfaa8ac9240ab61ed30f32486682d8714fc9e04e17bf
14	\\xe741e963e6a19fc8d448e92c2d203c97	3	2	2026-12-03 15:11:18.327631+00	dc1225bb4cea3c83	spiffe://spike.local/spike/pilot	127.0.0.1:49832	/spike.nexus.v1.SecretService/PutSecret	apps/b	allow	admin token token:e458f6076ad69c51	ok	1771	\\x6fd1a5849dac21ca1237c6d1bfac8c806cb8aff5eb622f7c655c0b5e9c430a69
15	\\xe741e963e6a19fc8d448e92c2d203c97	4	2	2026-12-03 15:11:18.343876+00	26af1f051957f051	spiffe://spike.local/spike/pilot	127.0.0.1:49836	/spike.nexus.v1.SecretService/PutSecret	apps/b	allow	admin token token:e458f6076ad69c51	ok	1000	\\xeeacacd953fa827a24a81b1650dc77590e4dc122020cf9bea0301411a0ef675b
16	\\xe741e963e6a19fc8d448e92c2d203c97	5	2	2026-12-03 15:11:18.357797+00	115f030e29daa158	spiffe://spike.local/spike/pilot	127.0.0.1:49844	/spike.nexus.v1.SecretService/PutSecret	apps/b	allow	admin token token:e458f6076ad69c51	ok	1286	\\x5a2f75e8705921a0743fba06b576477bbbe58df328f1ff8224bb0202452c4a10
17	\\xe741e963e6a19fc8d448e92c2d203c97	6	2	2026-12-03 15:11:18.372884+00	cad375654def61ff	spiffe://spike.local/spike/pilot	127.0.0.1:49846	/spike.nexus.v1.SecretService/PutSecret	apps/c	allow	admin token token:e458f6076ad69c51	ok	1351	\\x8315effd02395f57787b0bd3afb18aa5ee3a0500e8245a1aefe8e2697bd000ec
18	\\xe741e963e6a19fc8d448e92c2d203c97	7	2	2026-12-03 15:11:18.387946+00	280846a79dae3e21	spiffe://spike.local/spike/pilot	127.0.0.1:49858	/spike.nexus.v1.SecretService/DeleteSecret	apps/c	allow	admin token token:e458f6076ad69c51	ok	1427	\\x14d815d0b8f293cc374381a6b2a0df94ac0c040a0cc624d613fdb3588af24639
19	\\xe741e963e6a19fc8d448e92c2d203c97	0	3	2026-12-03 15:11:18.405784+00	444a922e9e2a0834	spiffe://spike.local/spike/pilot	127.0.0.1:49874	/spike.nexus.v1.SecretService/UpdateSecretMetadata	apps/empty	allow	admin token token:e458f6076ad69c51	ok	2500	\\x83cd7831a77763bf2db100e2de94e67fbbac90acd5ceb63dd49fa46331454780
20	\\xe741e963e6a19fc8d448e92c2d203c97	1	3	2026-12-03 15:11:18.423066+00	cd52c54ce8b7701b	spiffe://spike.local/spike/pilot	127.0.0.1:49886	/spike.nexus.v1.PolicyService/PutPolicy	policy:web-read	allow	admin token token:e458f6076ad69c51	ok	4868	\\x6e2cb6d01ddd772eea0fa53c3b4ddf3c77742bd6d9f8747c8b6afb9a380acb78
21	\\xe741e963e6a19fc8d448e92c2d203c97	2	3	2026-12-03 15:11:18.445975+00	fc8b5cd4f24362ac	spiffe://spike.local/spike/pilot	127.0.0.1:49888	/spike.nexus.v1.PolicyService/PutPolicy	policy:gone	allow	admin token token:e458f6076ad69c51	ok	2952	\\x0b8efdabcf6b8a041d4d522157281bad460af87ff891abc293ad9f0c36cea5f1
22	\\xe741e963e6a19fc8d448e92c2d203c97	3	3	2026-12-03 15:11:18.479838+00	c96be9b9a4b094ec	spiffe://spike.local/spike/pilot	127.0.0.1:49900	/spike.nexus.v1.PolicyService/DeletePolicy	policy:gone	allow	admin token token:e458f6076ad69c51	ok	6168	\\x6fcf4b0525dca03e83b7f046bb78d31d534457dae9bd2d0a3d4784dc5a91ec70
\.


--
-- Data for Name: data_keys; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.data_keys (id, root_key_version, wrapped, created_at, retired_at) FROM stdin;
\\x2c114f0ff04bde195ad0acea5ab3ecaa	1	\\x3f5e819b9702769d224034f6b1cab705d28dcecb2abd9dfafe8de46ae3f780689cdd228ff1e49f5f6be4ca45e719eea0e014944306fd68b46543797a	2026-12-03 15:11:17.947319+00	\N
\\x368b70f5a6ddd0b67fbac5bb5c45d27d	1	\\x395a6b595f22406d171473b0a6eef02731edc215e5d4dc8eebbae27e8ff6194b9bc5f754c68cb5789b2f931ce66b3a1f15daa59c1a4fa56e2fb1a919	2026-12-03 15:11:17.984264+00	\N
\.


--
-- Data for Name: policies; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.policies (name, sealed, created_at, updated_at) FROM stdin;
web-read	\\x012c114f0ff04bde195ad0acea5ab3ecaa33d9a5ea5c044f64ba51ad92b762d6765a2a5e6db42958825b140a96c050be2304cc0ff1fc4028ac2413be4cc906abdbe8bc5aeecf4f58cbaa5c149f0e6583ba699bd2e0ddef85e7aab2992964ac50051b3325d423c9b3d3fdaeb7fc18602859209f79b2182050de86a5b8acea3242405ab90f0326bd38aa05fdba0c2daceb033356eeaffd24d0a2d4d8266bd4211187bb19b03e637845f8eb49183615158e6d3b3017372b420c07dafec7d5ed02b7606437d4910bcda9ebdfbb0064f0cc16e46cd8be27eee07b7fc0a92c700a860c397069ec2e7c42fdcde21695	2026-12-03 15:11:18.42362+00	2026-12-03 15:11:18.42362+00
\.


--
-- Data for Name: policy_generation; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.policy_generation (id, generation) FROM stdin;
1	3
\.


--
-- Data for Name: policy_manifest; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.policy_manifest (id, sealed, updated_at) FROM stdin;
1	\\x012c114f0ff04bde195ad0acea5ab3ecaa49c61f5480d0a46aa40ae05231b4859959dfd70bf068a2e8dd4d4ccd41968dc7c31bed66efefab548d710b2626cb5be62e26a654139c46d961ad4ed3b4def2613c2ebc1b1030e4ec3689737f53326f0271a2ab9874ed0485ac4d1825eeed4af23e46af481290d03255d4f9015a1d2cf17912f9b437ff2e331e56358ae28c9a769dc98c21b20c9e	2026-12-03 15:11:18.48049+00
\.


--
-- Data for Name: root_keyrings; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.root_keyrings (id, keyring_id, kdf_params, ciphertext, created_at) FROM stdin;
1	\\x1ec5ecfde0581747c678a9d708500ee4	\\x01000000030001000004aff7228eefabf7ef2386b535df2cc895	\\xa6408c5aac7caf7c1ad88a02d7430eccbaead3b5f3a48a5bd1d7e8c828620c7aa6d63c43983e1a143925c370b6da48c87241651e764faf40a219421f946ba2f2d5eacaf4d2	2026-12-03 15:11:17.50731+00
\.


--
-- Data for Name: schema_migrations; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.schema_migrations (version, applied_at) FROM stdin;
1	2026-12-03 15:11:16.907819+00
2	2026-12-03 15:11:16.918464+00
3	2026-12-03 15:11:16.921274+00
4	2026-12-03 15:11:16.927637+00
5	2026-12-03 15:11:16.936251+00
\.


--
-- Data for Name: secret_versions; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.secret_versions (path, version, dek_id, sealed, created_by, created_at, deleted_at, destroyed_at) FROM stdin;
apps/a	3	\\x2c114f0ff04bde195ad0acea5ab3ecaa	\\x012c114f0ff04bde195ad0acea5ab3ecaa255a7c6112df5b8e8fd4e795777c0daa842dac2543f300356154d583878ad456427ad1d8427e76e691ffbe695db3146a94602eac7827c029d755	spiffe://spike.local/spike/pilot	2026-12-03 15:11:18.199182+00	\N	\N
apps/a	4	\\x2c114f0ff04bde195ad0acea5ab3ecaa	\\x012c114f0ff04bde195ad0acea5ab3ecaa9deec8e2039da97bfabd3567de8aac2b5a8b8b361e09a1e1823deb720cf15e04f1e9a8861d68543d21638a908f34e01e1d35a148b8e40b182491	spiffe://spike.local/spike/pilot	2026-12-03 15:11:18.223649+00	\N	\N
apps/a	2	\\x2c114f0ff04bde195ad0acea5ab3ecaa	\\x012c114f0ff04bde195ad0acea5ab3ecaad364b1d7d1267d567cf5f767f8bb8db0d86e0d93910fdb4e3c13ce95885e10cfc5a39d199a02b3fe24a4e2198d4fbd3377e4263869e5b56905d3	spiffe://spike.local/spike/pilot	2026-12-03 15:11:18.184794+00	2026-12-03 15:11:18.239838+00	\N
apps/a	1	\\x2c114f0ff04bde195ad0acea5ab3ecaa	\N	spiffe://spike.local/spike/pilot	2026-12-03 15:11:18.157359+00	\N	2026-12-03 15:11:18.254196+00
apps/b	3	\\x2c114f0ff04bde195ad0acea5ab3ecaa	\\x012c114f0ff04bde195ad0acea5ab3ecaa20f36b059312927e1b2ab89e30e2abae977ae71a079d3c5f1a56c1dbc0465f58c2e309569e74afc36735	spiffe://spike.local/spike/pilot	2026-12-03 15:11:18.344378+00	\N	\N
apps/b	4	\\x2c114f0ff04bde195ad0acea5ab3ecaa	\\x012c114f0ff04bde195ad0acea5ab3ecaad69572b95a6d4f00cf1f496216df629a1d99d191a2dfaeec250465aae34e3162f69cc3960bb5732ea097	spiffe://spike.local/spike/pilot	2026-12-03 15:11:18.358313+00	\N	\N
apps/c	1	\\x2c114f0ff04bde195ad0acea5ab3ecaa	\\x012c114f0ff04bde195ad0acea5ab3ecaaf10415ef7fd6c92ddd2a5c2f0e343cffea100368ad79f0db280c247dc26c8e470340fdea5af42249	spiffe://spike.local/spike/pilot	2026-12-03 15:11:18.373255+00	2026-12-03 15:11:18.388417+00	\N
\.


--
-- Data for Name: secrets; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.secrets (path, current_version, created_at, updated_at, oldest_version, max_versions, cas_required, custom_metadata) FROM stdin;
apps/a	4	2026-12-03 15:11:18.157359+00	2026-12-03 15:11:18.269423+00	1	0	f	\\x012c114f0ff04bde195ad0acea5ab3ecaa493d85dd3a7d0425bcaaa374efe78e645a9c3ef74400d0f02a257be0679b0ba495f1dc82c1a050c6e2cc8718d68434fc004a68d9debae0686a9710a8
apps/b	4	2026-12-03 15:11:18.293996+00	2026-12-03 15:11:18.358313+00	3	2	t	\N
apps/c	1	2026-12-03 15:11:18.373255+00	2026-12-03 15:11:18.388417+00	1	0	f	\N
apps/empty	0	2026-12-03 15:11:18.406645+00	2026-12-03 15:11:18.406645+00	0	3	f	\N
\.


--
-- Name: audit_log_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.audit_log_id_seq', 22, true);


--
-- Name: admin_tokens admin_tokens_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.admin_tokens
    ADD CONSTRAINT admin_tokens_pkey PRIMARY KEY (lookup);


--
-- Name: audit_checkpoints audit_checkpoints_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.audit_checkpoints
    ADD CONSTRAINT audit_checkpoints_pkey PRIMARY KEY (chain_id, lane);


--
-- Name: audit_keys audit_keys_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.audit_keys
    ADD CONSTRAINT audit_keys_pkey PRIMARY KEY (id);


--
-- Name: audit_log audit_log_chain_id_lane_seq_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.audit_log
    ADD CONSTRAINT audit_log_chain_id_lane_seq_key UNIQUE (chain_id, lane, seq);


--
-- Name: audit_log audit_log_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.audit_log
    ADD CONSTRAINT audit_log_pkey PRIMARY KEY (id);


--
-- Name: data_keys data_keys_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.data_keys
    ADD CONSTRAINT data_keys_pkey PRIMARY KEY (id);


--
-- Name: policies policies_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.policies
    ADD CONSTRAINT policies_pkey PRIMARY KEY (name);


--
-- Name: policy_generation policy_generation_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.policy_generation
    ADD CONSTRAINT policy_generation_pkey PRIMARY KEY (id);


--
-- Name: policy_manifest policy_manifest_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.policy_manifest
    ADD CONSTRAINT policy_manifest_pkey PRIMARY KEY (id);


--
-- Name: root_keyrings root_keyrings_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.root_keyrings
    ADD CONSTRAINT root_keyrings_pkey PRIMARY KEY (id);


--
-- Name: schema_migrations schema_migrations_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.schema_migrations
    ADD CONSTRAINT schema_migrations_pkey PRIMARY KEY (version);


--
-- Name: secret_versions secret_versions_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.secret_versions
    ADD CONSTRAINT secret_versions_pkey PRIMARY KEY (path, version);


--
-- Name: secrets secrets_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.secrets
    ADD CONSTRAINT secrets_pkey PRIMARY KEY (path);


--
-- Name: admin_tokens_expires_at_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX admin_tokens_expires_at_idx ON public.admin_tokens USING btree (expires_at);


--
-- Name: audit_log_at_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX audit_log_at_idx ON public.audit_log USING btree (at DESC, id DESC);


--
-- Name: secret_versions_dek_id_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX secret_versions_dek_id_idx ON public.secret_versions USING btree (dek_id);


--
-- Name: audit_keys audit_keys_dek_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.audit_keys
    ADD CONSTRAINT audit_keys_dek_id_fkey FOREIGN KEY (dek_id) REFERENCES public.data_keys(id);


--
-- Name: secret_versions secret_versions_dek_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.secret_versions
    ADD CONSTRAINT secret_versions_dek_id_fkey FOREIGN KEY (dek_id) REFERENCES public.data_keys(id);


--
-- Name: secret_versions secret_versions_path_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.secret_versions
    ADD CONSTRAINT secret_versions_path_fkey FOREIGN KEY (path) REFERENCES public.secrets(path) ON DELETE CASCADE;


--
-- PostgreSQL database dump complete
--

\unrestrict CO1nBZLNdXyXnM3vN7UNz1goa7dnVfB1U0zo0jD0OAT4Qwyb26UlI0NXd4LFdKY

