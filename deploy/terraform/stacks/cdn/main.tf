module "cdn" {
  source = "../../modules/cdn"

  providers = {
    aws           = aws
    aws.us_east_1 = aws.us_east_1
  }

  name                            = var.name
  aliases                         = var.aliases
  acm_certificate_arn             = var.acm_certificate_arn
  origin_domain_name              = var.origin_domain_name
  origin_verify_header_secret_arn = var.origin_verify_header_secret_arn
  logging_bucket_domain_name      = var.logging_bucket_domain_name
  route53_zone_id                 = var.route53_zone_id
  admin_path                      = var.admin_path
  magestack_cdn                   = var.magestack_cdn
  tags                            = var.tags
}

output "distribution_id" {
  description = "CloudFront distribution id."
  value       = module.cdn.distribution_id
}
