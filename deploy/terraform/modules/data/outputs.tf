output "aurora_endpoint" {
  description = "Writer endpoint (magestack dbproxy's backend)."
  value       = try(aws_rds_cluster.this.endpoint, null)
}

output "aurora_reader_endpoint" {
  description = "Reader endpoint (dbproxy's read split)."
  value       = try(aws_rds_cluster.this.reader_endpoint, null)
}

output "aurora_max_connections" {
  description = "max_connections set on the cluster (holds at the minimum ACU); cap dbproxy below it."
  value       = local.max_connections
}

output "aurora_master_secret_arn" {
  description = "Secrets Manager secret of the master user (managed by RDS)."
  value       = try(aws_rds_cluster.this.master_user_secret[0].secret_arn, null)
}

output "redis_endpoints" {
  description = "Primary endpoints of the sessions and cache groups."
  value       = { for k, g in aws_elasticache_replication_group.this : k => g.primary_endpoint_address }
}

output "redis_secret_arns" {
  description = "Secrets Manager secrets holding the Redis auth tokens (External Secrets reads them)."
  value       = { for k, s in aws_secretsmanager_secret.redis : k => s.arn }
}

output "media_bucket" {
  description = "The media bucket."
  value       = try(aws_s3_bucket.media.bucket, null)
}

output "media_policy_arn" {
  description = "IAM policy for media access (attached to Magento's IRSA role by the compute stack)."
  value       = try(aws_iam_policy.media.arn, null)
}

output "kms_key_arn" {
  description = "KMS key of Aurora, ElastiCache, the media bucket and the secrets (External Secrets needs kms:Decrypt on it)."
  value       = try(aws_kms_key.data.arn, null)
}

output "db_app_secret_arn" {
  description = "Secret of Magento's database user (magento/db-app)."
  value       = try(aws_secretsmanager_secret.db_app.arn, null)
}

output "logs_bucket_domain_name" {
  description = "Log bucket (CloudFront standard logs, media access logs)."
  value       = try(aws_s3_bucket.logs.bucket_domain_name, null)
}

output "media_bucket_regional_domain_name" {
  description = "The media bucket's regional name (the CDN's S3 origin)."
  value       = try(aws_s3_bucket.media.bucket_regional_domain_name, null)
}

output "media_bucket_arn" {
  description = "The media bucket (its policy admits the CDN's origin access control)."
  value       = try(aws_s3_bucket.media.arn, null)
}
