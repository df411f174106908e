locals {
  # Connections must hold at the minimum capacity, where Aurora has min_acu x 2 GiB: a
  # quarter of it for connections at ~4 MiB each (thread stack, sort/join/read buffers of a
  # Magento query) gives min_acu x 128. magestack dbproxy multiplexes the pods' connections
  # below this cap, so a scale-out of PHP never becomes a connection storm on Aurora.
  max_connections = floor(var.aurora_min_acu * 2048 * 0.25 / 4)
}

data "aws_partition" "current" {}

resource "aws_kms_key" "data" {
  description         = "${var.name}: Aurora, ElastiCache, media bucket"
  enable_key_rotation = true
  policy              = data.aws_iam_policy_document.kms_data.json
  tags                = var.tags
}

# The account's IAM policies decide (the default key policy), plus CloudFront: its origin
# access control reads the SSE-KMS media objects for the distributions of this account.
data "aws_iam_policy_document" "kms_data" {
  # checkov:skip=CKV_AWS_111:a key policy's "*" is the key itself; the first statement is AWS's default (the account's IAM decides)
  # checkov:skip=CKV_AWS_356:as above
  # checkov:skip=CKV_AWS_109:as above
  statement {
    sid       = "Account"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
  statement {
    sid       = "CloudFrontMedia"
    actions   = ["kms:Decrypt"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["cloudfront.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${data.aws_partition.current.partition}:cloudfront::${data.aws_caller_identity.current.account_id}:distribution/*"]
    }
  }
}

################################################################################
# Aurora MySQL Serverless v2
################################################################################

resource "aws_db_subnet_group" "this" {
  name       = var.name
  subnet_ids = var.data_subnet_ids
  tags       = var.tags
}

resource "aws_rds_cluster_parameter_group" "this" {
  name   = "${var.name}-aurora-mysql8"
  family = "aurora-mysql8.0"

  parameter {
    name  = "max_connections"
    value = tostring(local.max_connections)
  }

  # Magento needs these (its installer checks them).
  parameter {
    name  = "log_bin_trust_function_creators"
    value = "1"
  }

  parameter {
    name  = "require_secure_transport"
    value = "ON"
  }

  tags = var.tags
}

resource "aws_rds_cluster" "this" {
  cluster_identifier                  = var.name
  engine                              = "aurora-mysql"
  engine_mode                         = "provisioned"
  engine_version                      = var.aurora_engine_version
  database_name                       = "magento"
  master_username                     = "magento_admin"
  manage_master_user_password         = true
  master_user_secret_kms_key_id       = aws_kms_key.data.arn
  db_subnet_group_name                = aws_db_subnet_group.this.name
  vpc_security_group_ids              = [var.aurora_security_group_id]
  db_cluster_parameter_group_name     = aws_rds_cluster_parameter_group.this.name
  storage_encrypted                   = true
  kms_key_id                          = aws_kms_key.data.arn
  backup_retention_period             = var.backup_retention_days
  preferred_backup_window             = "02:00-03:00"
  copy_tags_to_snapshot               = true
  deletion_protection                 = true
  iam_database_authentication_enabled = true
  enabled_cloudwatch_logs_exports     = ["audit", "error", "slowquery"]
  final_snapshot_identifier           = "${var.name}-final"

  serverlessv2_scaling_configuration {
    min_capacity = var.aurora_min_acu
    max_capacity = var.aurora_max_acu
  }

  tags = var.tags
}

resource "aws_rds_cluster_instance" "this" {
  count                                 = var.aurora_instances
  identifier                            = "${var.name}-${count.index}"
  cluster_identifier                    = aws_rds_cluster.this.id
  instance_class                        = "db.serverless"
  engine                                = aws_rds_cluster.this.engine
  engine_version                        = aws_rds_cluster.this.engine_version
  auto_minor_version_upgrade            = true
  performance_insights_enabled          = true
  performance_insights_kms_key_id       = aws_kms_key.data.arn
  performance_insights_retention_period = 7
  monitoring_interval                   = 60
  monitoring_role_arn                   = aws_iam_role.rds_monitoring.arn
  tags                                  = var.tags
}

data "aws_iam_policy_document" "rds_monitoring_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["monitoring.rds.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "rds_monitoring" {
  name               = "${var.name}-rds-monitoring"
  assume_role_policy = data.aws_iam_policy_document.rds_monitoring_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "rds_monitoring" {
  role       = aws_iam_role.rds_monitoring.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

################################################################################
# Magento's own database user (never the master)
################################################################################

# Magento logs in as magento_app, with rights on its schema only. The master user (its secret
# managed and rotated by RDS, `rds!cluster-…`) is read by one thing: the db-bootstrap Job
# (deploy/k8s base/migrate.yaml), which creates this user and sets its password from this
# secret on every sync. The JSON has the fields of Secrets Manager's RDS MySQL alternating-users
# rotation (username, password, engine, host, port, dbname, masterarn), so that rotation can be
# switched on (db_app_rotation_lambda_arn) and the pods follow it: their env.php is rewritten
# from the mounted secret when it changes.
# No generated secret is in the Terraform state (which the pull-request plan role can read):
# each is an ephemeral value (Terraform >= 1.11), written once through write-only arguments
# (`*_wo`, sent to AWS and never stored). A `*_wo_version` bump writes a new value; Terraform
# never sees drift in them, so a rotation by Secrets Manager is left alone.
ephemeral "random_password" "db_app" {
  length  = 40
  special = false
}

resource "aws_secretsmanager_secret" "db_app" {
  name       = "magento/db-app"
  kms_key_id = aws_kms_key.data.arn
  tags       = var.tags
}

resource "aws_secretsmanager_secret_version" "db_app" {
  secret_id = aws_secretsmanager_secret.db_app.id
  secret_string_wo = jsonencode({
    engine    = "mysql"
    host      = aws_rds_cluster.this.endpoint
    port      = 3306
    dbname    = aws_rds_cluster.this.database_name
    username  = "magento_app"
    password  = ephemeral.random_password.db_app.result
    masterarn = aws_rds_cluster.this.master_user_secret[0].secret_arn
  })
  # Seeded once; rotation replaces the value (never bump this while rotation is on).
  secret_string_wo_version = 1
}

# Magento's crypt key (env.php crypt.key): made once, never rotated by Terraform (data
# encrypted with it would become unreadable): never bump its version.
ephemeral "random_password" "crypt_key" {
  length  = 32
  special = false
}

resource "aws_secretsmanager_secret" "crypt_key" {
  name       = "magento/crypt-key"
  kms_key_id = aws_kms_key.data.arn
  tags       = var.tags
}

resource "aws_secretsmanager_secret_version" "crypt_key" {
  secret_id                = aws_secretsmanager_secret.crypt_key.id
  secret_string_wo         = jsonencode({ key = ephemeral.random_password.crypt_key.result })
  secret_string_wo_version = 1
}

resource "aws_secretsmanager_secret_rotation" "db_app" {
  count               = var.db_app_rotation_lambda_arn == null ? 0 : 1
  secret_id           = aws_secretsmanager_secret.db_app.id
  rotation_lambda_arn = var.db_app_rotation_lambda_arn
  rotation_rules {
    automatically_after_days = 30
  }
}

################################################################################
# ElastiCache: sessions (never evict) and cache (evict LRU)
################################################################################

resource "aws_elasticache_subnet_group" "this" {
  name       = var.name
  subnet_ids = var.data_subnet_ids
  tags       = var.tags
}

resource "aws_elasticache_parameter_group" "sessions" {
  name   = "${var.name}-sessions"
  family = "redis7"
  # A full sessions store must refuse writes, never drop a cart.
  parameter {
    name  = "maxmemory-policy"
    value = "noeviction"
  }
  tags = var.tags
}

resource "aws_elasticache_parameter_group" "cache" {
  name   = "${var.name}-cache"
  family = "redis7"
  # Magento's cache and the edges' L2 pages: bounded by evicting the least recently used.
  parameter {
    name  = "maxmemory-policy"
    value = "allkeys-lru"
  }
  tags = var.tags
}

# The AUTH tokens: generated ephemerally into Secrets Manager (magento/redis-*), then read back
# ephemerally for the groups' write-only auth_token_wo, so the secret is the one source and
# neither value is in the state. To rotate: put a new token into the secret, then raise
# var.redis_auth_token_version (ElastiCache's ROTATE strategy keeps the old token valid until
# the next change, so pods that still hold it keep working while their Secret refreshes).
ephemeral "random_password" "redis" {
  for_each = toset(["sessions", "cache"])
  length   = 48
  special  = false
}

resource "aws_secretsmanager_secret" "redis" {
  for_each   = toset(["sessions", "cache"])
  name       = "magento/redis-${each.key}"
  kms_key_id = aws_kms_key.data.arn
  tags       = var.tags
}

resource "aws_secretsmanager_secret_version" "redis" {
  for_each                 = toset(["sessions", "cache"])
  secret_id                = aws_secretsmanager_secret.redis[each.key].id
  secret_string_wo         = jsonencode({ auth_token = ephemeral.random_password.redis[each.key].result })
  secret_string_wo_version = 1
}

ephemeral "aws_secretsmanager_secret_version" "redis" {
  for_each  = toset(["sessions", "cache"])
  secret_id = aws_secretsmanager_secret_version.redis[each.key].secret_id
}

resource "aws_elasticache_replication_group" "this" {
  for_each = {
    sessions = { node_type = var.redis_sessions_node_type, parameters = aws_elasticache_parameter_group.sessions.name, snapshots = 7 }
    cache    = { node_type = var.redis_cache_node_type, parameters = aws_elasticache_parameter_group.cache.name, snapshots = 1 }
  }

  # checkov:skip=CKV_AWS_31:the AUTH token is set, through the write-only auth_token_wo (checkov looks for auth_token, which would put it in the state)
  replication_group_id       = "${var.name}-${each.key}"
  description                = "${var.name}: Redis for ${each.key}"
  engine                     = "redis"
  engine_version             = var.redis_engine_version
  node_type                  = each.value.node_type
  num_cache_clusters         = 1 + var.redis_replicas
  automatic_failover_enabled = true
  multi_az_enabled           = true
  parameter_group_name       = each.value.parameters
  subnet_group_name          = aws_elasticache_subnet_group.this.name
  security_group_ids         = [var.redis_security_group_id]
  at_rest_encryption_enabled = true
  kms_key_id                 = aws_kms_key.data.arn
  transit_encryption_enabled = true
  auth_token_wo              = jsondecode(ephemeral.aws_secretsmanager_secret_version.redis[each.key].secret_string).auth_token
  auth_token_wo_version      = var.redis_auth_token_version
  auth_token_update_strategy = "ROTATE"
  snapshot_retention_limit   = each.value.snapshots
  auto_minor_version_upgrade = true
  tags                       = var.tags
}
