output "distribution_id" {
  description = "CloudFront distribution id (for invalidations)."
  value       = try(aws_cloudfront_distribution.this.id, null)
}

output "distribution_domain_name" {
  description = "The distribution's own domain name."
  value       = try(aws_cloudfront_distribution.this.domain_name, null)
}

output "web_acl_arn" {
  description = "WAF web ACL attached to the distribution."
  value       = try(aws_wafv2_web_acl.this.arn, null)
}
